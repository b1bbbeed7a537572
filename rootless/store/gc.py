"""Mark and sweep: whatever no image entry and no container reaches goes.

Roots: every index.json entry (manifest -> config + layer blobs, diffIDs ->
layers) and every container's image id (config blob -> diffIDs -> layers, so a
container keeps its layers even after `rmi -f`). Swept: unreferenced blobs and
layers, incomplete layers, temporary files, dangling short links. Runs under
the exclusive store lock, so no pull is in flight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rootless.errors import LockTimeoutError, StoreError
from rootless.store import crash
from rootless.store.blobs import pid_alive
from rootless.store.locking import unlink_quiet
from rootless.store.store import Store

RMI_LOCK_WAIT = 10.0


@dataclass
class GcResult:
    blobs: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    bytes_freed: int = 0


@dataclass
class _Marks:
    blobs: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)


def _mark_config(store: Store, config_digest: str, marks: _Marks) -> None:
    marks.blobs.add(config_digest)
    try:
        obj = json.loads(store.blobs.read(config_digest, verify=False))
        diff_ids = obj["rootfs"]["diff_ids"]
    except (StoreError, ValueError, KeyError, TypeError):
        return
    if isinstance(diff_ids, list):
        marks.layers.update(str(d) for d in diff_ids)


def _mark_manifest(store: Store, digest: str, marks: _Marks) -> None:
    marks.blobs.add(digest)
    try:
        obj = json.loads(store.blobs.read(digest, verify=False))
    except (StoreError, ValueError):
        return
    if not isinstance(obj, dict):
        return
    config = obj.get("config")
    if isinstance(config, dict) and "digest" in config:
        _mark_config(store, str(config["digest"]), marks)
    for layer in obj.get("layers") or []:
        if isinstance(layer, dict) and "digest" in layer:
            marks.blobs.add(str(layer["digest"]))
    for child in obj.get("manifests") or []:
        if isinstance(child, dict) and "digest" in child:
            _mark_manifest(store, str(child["digest"]), marks)


def mark(store: Store) -> _Marks:
    marks = _Marks()
    for entry in store.index.entries():
        _mark_manifest(store, entry.digest, marks)
    for image_id in store.container_image_ids():
        _mark_config(store, image_id, marks)
    return marks


def collect(store: Store) -> GcResult:
    """Sweep everything unreachable; the caller holds `store.delete_lock()`."""
    marks = mark(store)
    result = GcResult()
    for digest in list(store.blobs.digests()):
        if digest not in marks.blobs:
            result.bytes_freed += store.blobs.delete(digest)
            result.blobs.append(digest)
    crash.point("gc-layers")
    for diff_id in list(store.layers.diff_ids()):
        if diff_id not in marks.layers:
            result.bytes_freed += store.layers.remove(diff_id)
            result.layers.append(diff_id)
    store.layers.sweep()
    store.blobs.sweep_tmp(everything=True)
    _sweep_locks(store, marks)
    sweep_stale_files(store)
    return result


def sweep_stale_files(store: Store) -> None:
    """What killed commands leave outside blobs/ and layers/: build work
    directories (`tmp/build-<pid>-*`) and the temporary files of atomic writes
    (`index.json.tmp-<pid>-*`, `build-cache/<key>.tmp-<pid>-*`) of processes
    that are gone. Safe under the shared lock too: only dead writers' files."""
    for directory in (store.root, os.path.join(store.root, "build-cache")):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            base, sep, rest = name.partition(".tmp-")
            pid = rest.split("-", 1)[0]
            if sep and base and pid.isdigit() and not pid_alive(int(pid)):
                unlink_quiet(os.path.join(directory, name))
    try:
        names = os.listdir(store.paths.tmp)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "build" and parts[1].isdigit() and not pid_alive(int(parts[1])):
            try:
                store.ownership.rmtree(os.path.join(store.paths.tmp, name))
            except (OSError, StoreError) as exc:
                from rootless import log

                log.debug(f"could not remove {name} from {store.paths.tmp}: {exc}")


def _sweep_locks(store: Store, marks: _Marks) -> None:
    keep = {"layer-" + d.split(":", 1)[-1] for d in marks.layers}
    try:
        names = os.listdir(store.paths.locks)
    except FileNotFoundError:
        return
    for name in names:
        if name not in keep:
            try:
                os.unlink(os.path.join(store.paths.locks, name))
            except OSError:
                pass


# ---------------------------------------------------------------- rmi, prune


class ImageInUseError(StoreError):
    """An image still has containers (running or not)."""


def _conflict_in_use(text: str, image_id: str, users: list[str]) -> ImageInUseError:
    return ImageInUseError(
        f"unable to remove {text}: image {image_id.split(':', 1)[1][:12]} is used by "
        f"container {users[0][:12]}" + (f" and {len(users) - 1} more" if len(users) > 1 else ""),
        hint="remove the containers first, or use -f",
    )


def remove_image(store: Store, text: str, *, force: bool = False) -> list[tuple[str, str]]:
    """docker rmi for one argument: ("Untagged", name) / ("Deleted", id) events.

    A name of an image that has other names is only untagged. Otherwise the
    image goes, unless a container uses it (refused without `force`; with it,
    the names go and the container keeps its layers) or, named by id, it has
    several names (refused without `force`).
    """
    entries = store.index.entries()
    digest = store.resolve(text, entries)
    image = store.image(digest)
    full = _tag_name(text)
    by_name = full is not None and any(e.name == full for e in entries)
    named = [e.name for e in entries if e.digest == digest and e.name]
    if by_name and len(named) > 1:
        assert full is not None
        store.index.untag(full)
        return [("Untagged", full)]
    if not by_name and len(named) > 1 and not force:
        raise StoreError(
            f"unable to delete {image.short_id} (must be forced): it has {len(named)} names",
            hint="remove the names one by one, or use -f",
        )
    users = store.users_of(image.id)
    if users and not force:
        raise _conflict_in_use(text, image.id, users)
    events = [("Untagged", n) for n in named]
    store.index.remove(digest)
    crash.point("rmi-removed")
    if not users:
        events.append(("Deleted", image.id))
    return events


def _tag_name(text: str) -> str | None:
    from rootless.errors import InvalidReferenceError
    from rootless.image.reference import Reference

    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        return None
    return None if ref.digest else f"{ref.name}:{ref.tag}"


@contextmanager
def removal_lock(store: Store, wait: float = RMI_LOCK_WAIT) -> Iterator[bool]:
    """rmi's lock: the store lock, exclusive, if it comes within `wait` seconds
    (yields True). Then checking an image's users, removing it and sweeping are
    one step for every command that creates a container or adds content
    (they hold the lock shared): a `run` that wins the race makes rmi fail
    with "in use", one that loses finds no image. A long pull or build holds
    the lock longer: rmi then goes on without it (yields False) and leaves the
    sweep to the next rmi or prune; a container created meanwhile still keeps
    its layers, as after `rmi -f`."""
    lock = store.lock(shared=False, timeout=wait)
    try:
        lock.acquire()
    except LockTimeoutError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def prune_images(store: Store, *, all_unused: bool) -> tuple[list[tuple[str, str]], int]:
    """Remove dangling images (every unused one with all_unused) and sweep."""
    events: list[tuple[str, str]] = []
    with store.delete_lock():
        entries = store.index.entries()
        used = store.container_image_ids()
        seen: set[str] = set()
        for e in entries:
            if e.digest in seen:
                continue
            seen.add(e.digest)
            names = [x.name for x in entries if x.digest == e.digest and x.name]
            if names and not all_unused:
                continue
            image = store.image(e.digest)
            if image.id in used:
                continue
            store.index.remove(e.digest)
            events += [("untagged", n) for n in names] + [("deleted", image.id)]
        result = collect(store)
    return events, result.bytes_freed
