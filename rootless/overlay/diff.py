"""`diff`: what a container changed, from its upper dir only.

The walk visits the upper dir (so the cost follows the number of changes, not
the image size) and looks each path up in the lower layers (`LayerView`):

  - an upper entry that exists below is C, otherwise A (so every parent
    directory of a change shows as C, as docker shows it);
  - a whiteout is D when the name exists below;
  - below an opaque directory (`rm -rf d && mkdir d`), and below any directory
    under it, the lower entries that were not re-added are D.

Mount points the runtime created in the upper dir (empty /etc/hosts,
/etc/hostname, /etc/resolv.conf, /proc, /sys, /dev, volume and tmpfs targets,
which docker keeps in a separate init layer) are not changes; nor is a directory
that was only copied up for them (same mode and owner, nothing changed below).

Sorted by path, like docker's `changesByPath`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

from rootless.errors import ContainerError
from rootless.overlay.view import LayerView
from rootless.overlay.whiteout import OPAQUE_MARKER, is_opaque, whiteout_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.runtime.containers import Container

ADDED, CHANGED, DELETED = "A", "C", "D"


@dataclass(frozen=True)
class Change:
    kind: str  # "A", "C" or "D"
    path: str  # absolute inside the container: "/etc/passwd"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


RUNTIME_MOUNTPOINTS = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev")


def runtime_mountpoint(st: os.stat_result) -> bool:
    """Whether an entry looks like a mount point the runtime made (empty file or dir)."""
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0) or stat.S_ISDIR(st.st_mode)


def _same_dir(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid)


def _prune_copied_up_dirs(out: list[Change], candidates: set[str]) -> list[Change]:
    """Drop C directories that nothing below them explains (see the module doc)."""
    needed: set[str] = set()
    for ch in out:
        if ch.path in candidates:
            continue
        parent = ch.path.rpartition("/")[0]
        while parent and parent not in needed:
            needed.add(parent)
            parent = parent.rpartition("/")[0]
    return [ch for ch in out if ch.path not in candidates or ch.path in needed]


def is_skipped(rel: str, st: os.stat_result, skip: frozenset[str], view: LayerView) -> bool:
    return rel in skip and runtime_mountpoint(st) and view.lookup(rel) is None


def compute(upper: str, lowers_top_down: list[str],
            skip: frozenset[str] = frozenset()) -> list[Change]:
    """The changes an upper dir makes over its lower layers (topmost first).
    `skip`: relative paths of runtime mount points."""
    view = LayerView(lowers_top_down)
    out: list[Change] = []
    candidates: set[str] = set()
    stack: list[tuple[str, bool]] = [("", False)]  # (dir, lower hidden by an opaque dir)
    while stack:
        rel, hidden = stack.pop()
        path = os.path.join(upper, rel) if rel else upper
        with os.scandir(path) as it:
            entries = list(it)
        if rel and (is_opaque(path) or any(e.name == OPAQUE_MARKER for e in entries)):
            hidden = True
        present: set[str] = set()
        for e in entries:
            if e.name == OPAQUE_MARKER:
                continue
            st = e.stat(follow_symlinks=False)
            target = whiteout_target(e.name, st)
            if target is not None:
                present.add(target)
                if view.lookup(_join(rel, target)) is not None:
                    out.append(Change(DELETED, "/" + _join(rel, target)))
                continue
            child = _join(rel, e.name)
            present.add(e.name)
            if child in skip and is_skipped(child, st, skip, view):
                continue
            below = view.lookup(child)
            out.append(Change(CHANGED if below is not None else ADDED, "/" + child))
            if below is not None and stat.S_ISDIR(st.st_mode) and _same_dir(st, below[1]):
                candidates.add("/" + child)
            if stat.S_ISDIR(st.st_mode):
                stack.append((child, hidden))
        if hidden and view.is_dir(rel):
            for name in view.listdir(rel):
                if name not in present:
                    out.append(Change(DELETED, "/" + _join(rel, name)))
    out.sort(key=lambda c: c.path)
    return _prune_copied_up_dirs(out, candidates)


def mountpoints(c: Container) -> frozenset[str]:
    """Relative paths where the runtime may have made mount points in the upper dir."""
    run = c.config.get("run")
    run = run if isinstance(run, dict) else {}
    paths = list(RUNTIME_MOUNTPOINTS)
    for spec in run.get("volumes") or ():
        parts = str(spec).split(":")
        if len(parts) >= 2:
            paths.append(parts[1])
    for spec in run.get("tmpfs") or ():
        paths.append(str(spec).partition(":")[0])
    return frozenset(os.path.normpath(p).strip("/") for p in paths if p.strip("/"))


def container_layers(c: Container) -> tuple[str, list[str]]:
    """(upper dir, lower layer dirs topmost first) of an overlay container."""
    mode = str(c.config.get("rootfs_mode", "rootfs"))
    if mode not in ("overlay", "fuse-overlayfs"):
        raise ContainerError(
            f"container {c.name} has no copy-on-write layer (its root is a {mode} directory)",
            hint="diff and commit work on containers created from images with the overlay "
            "or fuse-overlayfs driver",
        )
    layers_dir = str(c.config["layers_dir"])
    # the short links (layers/l/<id> -> ../<hex>/diff) resolved: walks never follow symlinks
    lower = [os.path.realpath(os.path.join(layers_dir, str(x))) for x in c.config["lower"]]  # type: ignore[attr-defined]
    return c.path("upper"), list(reversed(lower))


def changes(c: Container) -> list[Change]:
    """`compute` for a container, run inside its user namespace when needed."""
    from rootless.overlay import userns

    upper, lowers = container_layers(c)
    if not os.path.isdir(upper):
        return []
    skip = mountpoints(c)

    def work() -> bytes:
        return json.dumps([[x.kind, x.path] for x in compute(upper, lowers, skip)]).encode()

    data = userns.collect(work, mapping=userns.caller_mapping())
    return [Change(str(k), str(p)) for k, p in json.loads(data)]
