"""`commit`: a container's upper dir becomes a new image on top of its image.

Steps, all under the store lock (shared, like a pull):
  1. pack the upper dir into a layer tar (`overlay.export.pack_upper`, in the
     container's user namespace) -> a temporary file in blobs/tmp, sha256 = diffID;
  2. `ingest_layer`: gzip (ISA-L) into the blob store and unpack into the layer
     store (ownership as for a pulled layer), both digests checked;
  3. the config: the container's image config + the new diffID + a history entry
     (created, created_by, author, comment) + the `--change`s;
  4. an OCI manifest: the image's layer blobs + the new one;
  5. the name in index.json, last. A crash before that leaves only unreferenced
     blobs/layers for `image prune` to sweep; nothing half-written is visible.

A running container is read as it is (no pause): files being written while the
tar is made may be caught half-way, as with `docker commit --pause=false`.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import time
from dataclasses import dataclass, field

from rootless.errors import ContainerError, StoreError
from rootless.image import types as t

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.image.types import Descriptor
    from rootless.runtime.containers import Container
    from rootless.store import Store

_OCI_EQUIVALENT = {
    t.DOCKER_LAYER_GZIP: t.OCI_LAYER_GZIP,
    t.DOCKER_LAYER_ZSTD: t.OCI_LAYER_ZSTD,
    t.DOCKER_FOREIGN_LAYER: t.OCI_LAYER_NONDIST_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": t.OCI_LAYER,
    "": t.OCI_LAYER_GZIP,
}
CHUNK = 1 << 20


@dataclass
class CommitOptions:
    name: str | None = None  # REPO[:TAG]
    message: str = ""
    author: str = ""
    changes: list[str] = field(default_factory=list)


def _now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _base_config(c: Container) -> dict[str, object]:
    raw = c.config.get("image_config")
    if not isinstance(raw, dict):
        raise ContainerError(f"container {c.name} was not created from an image: nothing to commit onto")
    return copy.deepcopy(raw)


def _base_diff_ids(config: dict[str, object]) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return [str(d) for d in ids] if isinstance(ids, list) else []


def new_config(base: dict[str, object], runtime: dict[str, object], diff_id: str,
               created_by: str, opts: CommitOptions) -> dict[str, object]:
    """The committed image's config (pure)."""
    now = _now()
    cfg = dict(base)
    for stale in ("container", "container_config", "id", "parent"):
        cfg.pop(stale, None)
    cfg["created"] = now
    if opts.author:
        cfg["author"] = opts.author
    else:
        cfg.pop("author", None)
    cfg["config"] = runtime
    cfg["rootfs"] = {"type": "layers", "diff_ids": [*_base_diff_ids(base), diff_id]}
    entry: dict[str, object] = {"created": now, "created_by": created_by}
    if opts.author:
        entry["author"] = opts.author
    if opts.message:
        entry["comment"] = opts.message
    history = base.get("history")
    cfg["history"] = [*(history if isinstance(history, list) else []), entry]
    return cfg


def _pack_to_file(c: Container, path: str) -> str:
    """The upper dir as a tar in `path`; returns its sha256 (the diffID)."""
    from rootless.overlay.export import StreamDigest, spawn_pack

    digest = StreamDigest()
    r, child = spawn_pack(c, merged=False)
    try:
        with open(path, "xb") as out:
            while chunk := os.read(r, CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.close(r)
        child.kill()
        raise
    os.close(r)
    child.wait()
    return digest.digest


def _base_layers(store: Store, diff_ids: list[str]) -> list[Descriptor]:
    from rootless.image.types import Descriptor

    out = []
    for diff_id in diff_ids:
        info = store.layers.info(diff_id)
        if info is None or not info.compressed_digest:
            raise StoreError(f"layer {diff_id[7:19]} of the container's image is missing from the store",
                             hint="pull the image again")
        media = _OCI_EQUIVALENT.get(info.media_type, info.media_type)
        out.append(Descriptor(media, info.compressed_digest, info.compressed_size))
    return out


def _platform(cfg: dict[str, object]) -> dict[str, str]:
    plat = {"os": str(cfg.get("os") or "linux"), "architecture": str(cfg.get("architecture") or "")}
    if cfg.get("variant"):
        plat["variant"] = str(cfg["variant"])
    return plat


def commit(store: Store, c: Container, opts: CommitOptions) -> str:
    """Commit `c`; returns the new image ID (`sha256:<config digest>`)."""
    from rootless.image.changes import apply_changes
    from rootless.overlay.diff import container_layers
    from rootless.store import normalize_name

    name = normalize_name(opts.name) if opts.name else None
    container_layers(c)  # an overlay container, or a clear error
    base = _base_config(c)
    runtime_in = base.get("config")
    runtime = apply_changes(runtime_in if isinstance(runtime_in, dict) else {}, opts.changes)
    argv = c.config.get("run", {}).get("argv", [])  # type: ignore[attr-defined]
    created_by = " ".join(str(a) for a in argv) if isinstance(argv, list) else ""
    try:
        with store.lock(shared=True):
            return _commit_locked(store, c, base, runtime, created_by, name, opts)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"no space left on the device holding {store.root}") from exc
        raise ContainerError(f"cannot commit container {c.name}: {exc.strerror or exc}") from exc


def _commit_locked(store: Store, c: Container, base: dict[str, object], runtime: dict[str, object],
                   created_by: str, name: str | None, opts: CommitOptions) -> str:
    from rootless.image.layerio import LayerSource, ingest_layer
    from rootless.image.manifest import manifest_to_json
    from rootless.image.types import Descriptor, Manifest

    base_layers = _base_layers(store, _base_diff_ids(base))
    tmp = os.path.join(store.paths.blobs_tmp, f"commit.{os.getpid()}.{time.monotonic_ns()}")
    try:
        diff_id = _pack_to_file(c, tmp)
        src = LayerSource(lambda: open(tmp, "rb"), diff_id,  # noqa: SIM115
                          f"the new layer of container {c.name}")
        layer = ingest_layer(store, src, oci=True)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    cfg = new_config(base, runtime, diff_id, created_by, opts)
    config = json.dumps(cfg, separators=(",", ":")).encode()
    config_digest = store.blobs.put(config)
    manifest = manifest_to_json(
        Manifest(t.OCI_MANIFEST, Descriptor(t.OCI_CONFIG, config_digest, len(config)),
                 (*base_layers, layer))
    )
    digest = store.blobs.put(manifest)
    store.index.add(digest, t.OCI_MANIFEST, len(manifest), name, platform=_platform(cfg))
    return config_digest
