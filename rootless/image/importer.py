"""`import`: a root filesystem tarball becomes a one-layer image.

The tarball (a file or standard input; plain, gzip, zstd, xz or bzip2) is read
once: unpacked as the layer while its diffID is hashed and, unless it is gzip or
zstd already (then its bytes are the blob), gzip'd into the layer blob. Then the
config (host platform, `--change`s applied, a history entry with the message),
an OCI manifest and, last, the name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from rootless.errors import ImageError, StoreError
from rootless.image.changes import apply_changes
from rootless.image.layerio import (
    CHUNK,
    Inflater,
    LayerSource,
    ingest_layer,
    sniff,
)
from rootless.image.limits import LayerLimits
from rootless.image.types import OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest

if TYPE_CHECKING:
    from rootless.store import Store


@dataclass(frozen=True)
class Imported:
    id: str
    name: str | None


def _diff_id(path: str, label: str, limits: LayerLimits) -> str:
    """First pass over a file: the digest of its uncompressed tar (the diffID must
    be known before unpacking, so a file is read twice; a pipe is spooled)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        head = f.read(CHUNK)
        inflater = Inflater(sniff(head))
        chunk = head
        while chunk:
            try:
                out = inflater.feed(chunk)
            except Exception as exc:  # noqa: BLE001 - codec errors differ per codec
                raise ImageError(f"{label}: corrupt compressed data ({exc})") from None
            digest.update(out)
            size += len(out)
            limits.check_layer_stream(size, label)
            chunk = f.read(CHUNK)
    if not inflater.ended:
        raise ImageError(f"{label} is truncated (the compressed stream ends early)")
    return "sha256:" + digest.hexdigest()


def import_tarball(
    store: Store,
    path: str,
    name: str | None = None,
    changes: list[str] | None = None,
    message: str = "",
) -> Imported:
    """Import the tarball at `path` ("-": stdin) as an image, named `name` if given."""
    from rootless.store import normalize_name

    full = normalize_name(name) if name else None
    runtime = apply_changes({}, changes or [])  # bad changes fail before any work
    limits = LayerLimits.from_environment()
    try:
        with _local_file(store, path) as local:
            label = "standard input" if path == "-" else path
            diff_id = _diff_id(local, label, limits)
            with store.lock(shared=True):
                src = LayerSource(_opener(local), diff_id, f"tarball {label}")
                layer = ingest_layer(store, src, oci=True, limits=limits)
                return _store_image(store, layer, diff_id, runtime, full, message, label)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(f"no space left on the device holding {store.root}") from exc
        raise ImageError(f"importing {path}: {exc.strerror or exc}") from exc


def _opener(path: str) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")


class _local_file:
    """A path to read twice: the file itself, or stdin spooled to blobs/tmp."""

    def __init__(self, store: Store, path: str) -> None:
        self.store, self.path, self.tmp = store, path, ""

    def __enter__(self) -> str:
        import os

        if self.path != "-":
            if not os.path.isfile(self.path):
                raise ImageError(f"cannot open {self.path}: no such file")
            return self.path
        if sys.stdin is None or sys.stdin.isatty():
            raise ImageError("no tarball given: standard input is a terminal")
        self.tmp = os.path.join(
            self.store.paths.blobs_tmp, f"import.{os.getpid()}.{time.monotonic_ns()}"
        )
        with open(self.tmp, "wb") as out:
            while chunk := sys.stdin.buffer.read(CHUNK):
                out.write(chunk)
        return self.tmp

    def __exit__(self, *exc: object) -> None:
        import os

        if self.tmp:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def _config(diff_id: str, runtime: dict[str, object], message: str, label: str) -> bytes:
    from rootless.image.manifest import host_platform

    plat = host_platform()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    history: dict[str, object] = {"created": now, "created_by": f"rootless import {label}"}
    history["comment"] = message or f"Imported from {label}"
    config: dict[str, object] = {
        "created": now,
        "architecture": plat.architecture,
        "os": plat.os,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [history],
    }
    if plat.variant:
        config["variant"] = plat.variant
    return json.dumps(config, separators=(",", ":")).encode()


def _store_image(
    store: Store,
    layer: Descriptor,
    diff_id: str,
    runtime: dict[str, object],
    name: str | None,
    message: str,
    label: str,
) -> Imported:
    from rootless.image.manifest import manifest_to_json

    config = _config(diff_id, runtime, message, label)
    config_digest = store.blobs.put(config)
    manifest = manifest_to_json(
        Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, config_digest, len(config)), (layer,))
    )
    digest = store.blobs.put(manifest)
    from rootless.image.manifest import host_platform

    plat = host_platform()
    platform = {"os": plat.os, "architecture": plat.architecture}
    store.index.add(digest, OCI_MANIFEST, len(manifest), name, platform=platform)
    return Imported(config_digest, name)


__all__ = ["Imported", "import_tarball"]
