"""Unpacked layers, one per diffID, shared by every image that uses them.

    layers/<hex>/diff/         the layer's files in overlay format
    layers/<hex>/layer.json    what it is (diff_id, compressed digest/size/media
                               type, size, format, ownership, short link)
    layers/<hex>/incomplete    present while unpacking: such a layer is never
                               used, and is deleted by the next unpack or sweep
    layers/l/<short>           -> ../<hex>/diff, keeps overlay's lowerdir= short

Unpacking a layer holds `locks/layer-<hex>` exclusively, so two pulls wanting
the same layer unpack it once: the second waits and then finds it complete.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

from rootless.errors import StoreError
from rootless.paths import StorePaths
from rootless.store import crash
from rootless.store.blobs import digest_hex
from rootless.store.locking import FileLock, atomic_write, unlink_quiet
from rootless.store.ownership import LAYER_FORMAT, Ownership


@dataclass(frozen=True)
class LayerInfo:
    """The contents of layer.json."""

    diff_id: str
    size: int  # bytes of the uncompressed tar stream
    compressed_digest: str
    compressed_size: int
    media_type: str
    format: str
    ownership: str
    link: str
    created: float
    entries: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LayerInfo:
        obj = json.loads(data)
        fields = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**fields)


@dataclass(frozen=True)
class UnpackResult:
    """What the caller's stream check reports after the unpack consumed it."""

    size: int
    compressed_digest: str
    compressed_size: int
    media_type: str


def new_short_id() -> str:
    """A 26-character link name (containers/storage uses the same length)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]


class LayerStore:
    """The `layers/` directory of a store."""

    def __init__(self, paths: StorePaths, ownership: Ownership) -> None:
        self.paths = paths
        self.ownership = ownership

    def diff_dir(self, diff_id: str) -> str:
        return self.paths.layer_diff(digest_hex(diff_id))

    def info(self, diff_id: str) -> LayerInfo | None:
        """layer.json of a complete layer; None when absent or incomplete."""
        hexd = digest_hex(diff_id)
        try:
            with open(self.paths.layer_json(hexd), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if os.path.exists(self.paths.layer_incomplete(hexd)):
            return None
        try:
            return LayerInfo.from_json(data)
        except (ValueError, TypeError, KeyError):
            return None

    def has(self, diff_id: str) -> bool:
        return self.info(diff_id) is not None

    def lock(self, diff_id: str, timeout: float | None = None) -> FileLock:
        return FileLock(self.paths.layer_lock(digest_hex(diff_id)), timeout=timeout, what="layer")

    def diff_ids(self) -> Iterator[str]:
        try:
            names = os.listdir(self.paths.layers)
        except FileNotFoundError:
            return
        for name in names:
            if len(name) == 64:
                yield "sha256:" + name

    # -------------------------------------------------------------- unpack

    def unpack(
        self,
        diff_id: str,
        source: Iterable[bytes] | BinaryIO,
        finish: Callable[[], UnpackResult],
        *,
        max_file_size: int = 0,
        max_total_size: int = 0,
    ) -> LayerInfo:
        """Unpack `source` as layer `diff_id`; the caller holds the layer lock.

        `finish()` is called after the stream was consumed: it verifies the
        digests (raising on a mismatch) and describes the blob. Any failure
        deletes the partial layer. The limits (0: none) bound one file's and all
        files' apparent size (decompression bombs, huge sparse files).
        """
        hexd = digest_hex(diff_id)
        top = self.paths.layer(hexd)
        self.remove_dir(top)
        os.makedirs(self.paths.layer_diff(hexd), mode=0o755)
        open(self.paths.layer_incomplete(hexd), "wb").close()
        try:
            stats = self.ownership.untar(
                source,
                self.paths.layer_diff(hexd),
                max_file_size=max_file_size,
                max_total_size=max_total_size,
            )
            result = finish()
            info = self._complete(diff_id, result, stats.entries)
        except BaseException:
            self.remove_dir(top)
            raise
        return info

    def _complete(self, diff_id: str, result: UnpackResult, entries: int) -> LayerInfo:
        crash.point("layer-unpacked")
        hexd = digest_hex(diff_id)
        link = new_short_id()
        info = LayerInfo(
            diff_id=diff_id,
            size=result.size,
            compressed_digest=result.compressed_digest,
            compressed_size=result.compressed_size,
            media_type=result.media_type,
            format=LAYER_FORMAT,
            ownership=self.ownership.mode,
            link=link,
            created=time.time(),
            entries=entries,
        )
        atomic_write(self.paths.layer_json(hexd), info.to_json(), sync=False)
        crash.point("layer-json")
        os.symlink(os.path.join("..", hexd, "diff"), self.paths.layer_link(link))
        crash.point("layer-link")
        os.unlink(self.paths.layer_incomplete(hexd))
        return info

    # -------------------------------------------------------------- removal

    def remove_dir(self, top: str) -> None:
        """Delete a layer directory (complete or not) and its short link.

        Order matters for a kill at any point: the `incomplete` marker first and
        then layer.json go before anything else, so a half-deleted layer never
        looks complete (the recursive delete removes entries in directory order,
        the marker possibly among the first); the short link goes before the
        files, so a complete layer never lacks it."""
        if not os.path.lexists(top):
            return
        mode = None
        link = None
        try:
            with open(os.path.join(top, "layer.json"), "rb") as f:
                info = LayerInfo.from_json(f.read())
            mode, link = info.ownership, info.link
        except (OSError, ValueError, TypeError, KeyError):
            pass
        try:
            open(os.path.join(top, "incomplete"), "wb").close()
        except OSError:
            pass
        unlink_quiet(os.path.join(top, "layer.json"))
        crash.point("layer-removing")
        if link:
            unlink_quiet(self.paths.layer_link(link))
        try:
            self.ownership.rmtree(top, mode)
        except OSError as exc:
            raise StoreError(
                f"cannot remove layer {os.path.basename(top)[:12]}: {exc}",
                hint="it may have been unpacked by another user mapping; remove it as that user",
            ) from exc

    def remove(self, diff_id: str) -> int:
        """Delete a layer; returns the bytes it held (its uncompressed size)."""
        info = self.info(diff_id)
        self.remove_dir(self.paths.layer(digest_hex(diff_id)))
        unlink_quiet(self.paths.layer_lock(digest_hex(diff_id)))
        return info.size if info else 0

    def sweep(self) -> int:
        """Delete incomplete layers (caller holds the store lock exclusively) and
        dangling short links; returns how many layers went."""
        removed = 0
        for diff_id in list(self.diff_ids()):
            hexd = digest_hex(diff_id)
            if os.path.exists(self.paths.layer_incomplete(hexd)) or not os.path.exists(
                self.paths.layer_json(hexd)
            ):
                self.remove_dir(self.paths.layer(hexd))
                removed += 1
        self._sweep_links()
        return removed

    def _sweep_links(self) -> None:
        try:
            names = os.listdir(self.paths.layer_links)
        except FileNotFoundError:
            return
        for name in names:
            path = self.paths.layer_link(name)
            if not os.path.exists(path):
                unlink_quiet(path)
