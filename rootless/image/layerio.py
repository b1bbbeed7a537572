"""Layer streams for load, import and save: a tar (compressed or not) becomes an
unpacked layer plus a compressed blob, and a stored blob becomes a plain tar again.

`ingest_layer` reads a layer once: its raw bytes are hashed (and written to the
blob store when they are already compressed), inflated, hashed again for the
diffID and piped into `rl_untar`; an uncompressed (or xz/bzip2) input is gzip'd
on the fly, so the store always has a compressed blob for save and push. The
blob is renamed into place and the layer marked complete only when both digests
check out. `iter_tar` is the way back: a stored blob as its uncompressed tar,
hashed against the diffID while it is read (docker-archive layers are plain tars).
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rootless import log
from rootless.errors import DigestMismatchError, ImageError
from rootless.image.limits import LayerLimits, unpack_limit_error
from rootless.image.types import (
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    GZIP_LAYER_TYPES,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    PLAIN_LAYER_TYPES,
    ZSTD_LAYER_TYPES,
    Descriptor,
)

if TYPE_CHECKING:
    from rootless.store import Store

CHUNK = 1 << 20
GZIP_LEVEL = 1  # ISA-L level 1: ~1 GB/s, ratios close to gzip -6 for tars

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def sniff(head: bytes) -> str:
    """The compression of a stream from its first bytes: gzip, zstd, xz, bzip2 or none."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


def kind_of(media_type: str) -> str:
    if media_type in GZIP_LAYER_TYPES:
        return "gzip"
    if media_type in ZSTD_LAYER_TYPES:
        return "zstd"
    if media_type in PLAIN_LAYER_TYPES or media_type.endswith(".tar"):
        return "none"
    raise ImageError(f"unsupported layer media type {media_type!r}")


def media_type_for(kind: str, oci: bool) -> str:
    if kind == "zstd":
        return OCI_LAYER_ZSTD if oci else DOCKER_LAYER_ZSTD
    if kind == "none":
        return OCI_LAYER
    return OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP


# ---------------------------------------------------------------- (de)compression


class Inflater:
    """Incremental decompression (multi-member gzip, multi-frame zstd, xz, bzip2)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._new = _decompressor_factory(kind)
        self._obj: Any = None
        self.ended = kind == "none"

    def feed(self, data: bytes) -> bytes:
        if self._new is None:
            return data
        out: list[bytes] = []
        while data:
            if self._obj is None or getattr(self._obj, "eof", False):
                if self._obj is not None and not data.strip(b"\0"):
                    break  # zero padding after the last member
                self._obj = self._new()
            obj = self._obj
            out.append(obj.decompress(data))
            data = obj.unused_data if getattr(obj, "eof", False) else b""
        self.ended = self._obj is not None and bool(getattr(self._obj, "eof", False))
        return b"".join(out)


def _decompressor_factory(kind: str) -> Callable[[], Any] | None:
    if kind == "gzip":
        zmod: Any
        try:
            from isal import isal_zlib as zmod  # ISA-L: several times zlib's speed
        except ImportError:  # pragma: no cover - isal is a dependency
            import zlib as zmod
        return lambda: zmod.decompressobj(31)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            from rootless.errors import ImageError

            raise ImageError("this image has zstd-compressed layers and the zstandard module is missing",
                             hint="pip install zstandard") from None
        return zstandard.ZstdDecompressor().decompressobj
    if kind == "xz":
        return lzma.LZMADecompressor
    if kind == "bzip2":
        return bz2.BZ2Decompressor
    return None


def _gzip_compressor() -> Any:
    from isal import isal_zlib

    return isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31)


# ---------------------------------------------------------------- pending blobs


class PendingBlob:
    """A blob whose digest is known only at the end (we compress it ourselves):
    written to blobs/tmp as `pending.<pid>.<ns>` (swept like any temporary blob),
    hashed, and renamed into place by `commit()`."""

    def __init__(self, tmpdir: str) -> None:
        self.tmp = os.path.join(tmpdir, f"pending.{os.getpid()}.{time.monotonic_ns()}")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def commit(self, final: str) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, final)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


# ---------------------------------------------------------------- ingest


@dataclass(frozen=True)
class LayerSource:
    """Where a layer's bytes come from, and what is known about them up front."""

    open: Callable[[], Reader]
    diff_id: str
    what: str  # for messages: "layer abc.tar of busybox:latest"
    descriptor: Descriptor | None = None  # OCI: the compressed blob, digest-checked
    size_hint: int = 0  # bytes to read, for progress


class _Ingest:
    """One pass over a layer's bytes; iterate for tar chunks, then `finish()`."""

    def __init__(
        self,
        store: Store,
        src: LayerSource,
        oci: bool,
        report: Callable[[int], None],
        limits: LayerLimits,
    ):
        self.store = store
        self.src = src
        self.limits = limits
        self.oci = oci
        self.report = report
        self.reader = src.open()
        self.head = self.reader.read(CHUNK)
        desc = src.descriptor
        self.kind = kind_of(desc.media_type) if desc else sniff(self.head)
        self.inflater = Inflater(self.kind)
        # an archive's own blob is kept byte for byte (its manifest names it);
        # a plain tar of ours is gzip'd so save and push have a compressed blob
        self.keep_raw = desc is not None or self.kind in ("gzip", "zstd")
        self.raw_hash = hashlib.sha256()
        self.raw_size = 0
        self.diff_hash = hashlib.sha256()
        self.size = 0
        self.blob = PendingBlob(store.paths.blobs_tmp)
        self.deflater = None if self.keep_raw else _gzip_compressor()

    def __iter__(self) -> Iterator[bytes]:
        chunk, self.head = self.head, b""
        while chunk:
            self.raw_hash.update(chunk)
            self.raw_size += len(chunk)
            self.report(self.raw_size)
            if self.keep_raw:
                self.blob.write(chunk)
            try:
                out = self.inflater.feed(chunk)
            except Exception as exc:  # noqa: BLE001 - every codec has its own error type
                raise DigestMismatchError(f"{self.src.what}: corrupt {self.kind} data ({exc})")
            if out:
                self._tar_bytes(out)
                yield out
            chunk = self.reader.read(CHUNK)

    def _tar_bytes(self, data: bytes) -> None:
        self.diff_hash.update(data)
        self.size += len(data)
        self.limits.check_layer_stream(self.size, self.src.what)
        if self.deflater is not None:
            self.blob.write(self.deflater.compress(data))

    def drain(self) -> None:
        for _ in self:
            pass

    def finish(self) -> Descriptor:
        """Verify both digests and store the blob; returns its descriptor."""
        self.drain()
        what = self.src.what
        if not self.inflater.ended:
            raise DigestMismatchError(f"{what}: the compressed stream is truncated")
        actual = "sha256:" + self.diff_hash.hexdigest()
        if actual != self.src.diff_id:
            raise DigestMismatchError(
                f"{what}: content has digest {actual}, the image config says {self.src.diff_id}"
            )
        self._check_descriptor()
        if self.deflater is not None:
            self.blob.write(self.deflater.flush())
        media_type = (
            self.src.descriptor.media_type
            if self.src.descriptor is not None
            else media_type_for(self.kind if self.keep_raw else "gzip", self.oci)
        )
        desc = Descriptor(media_type, self.blob.digest, self.blob.size)
        if self.store.blobs.has(desc.digest, desc.size):
            self.blob.abort()
        else:
            self.blob.commit(self.store.blobs.path(desc.digest))
        return desc

    def _check_descriptor(self) -> None:
        desc = self.src.descriptor
        if desc is None:
            return
        raw = "sha256:" + self.raw_hash.hexdigest()
        if raw != desc.digest or self.raw_size != desc.size:
            raise DigestMismatchError(
                f"{self.src.what}: blob has digest {raw} ({self.raw_size} bytes), "
                f"the manifest says {desc.digest} ({desc.size} bytes)"
            )

    def close(self) -> None:
        self.blob.abort()
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


def ingest_layer(
    store: Store,
    src: LayerSource,
    *,
    oci: bool,
    report: Callable[[int], None] | None = None,
    limits: LayerLimits | None = None,
) -> Descriptor:
    """Make sure layer `src.diff_id` is unpacked and has a compressed blob; return
    the blob's descriptor. Skips the work when both are already in the store.
    `limits` (default: from the environment) bound what the layer may inflate to."""
    from rootless.store.layers import UnpackResult

    limits = limits or LayerLimits.from_environment()
    with store.layers.lock(src.diff_id):
        existing = _existing(store, src)
        if existing is not None:
            return existing
        job = _Ingest(store, src, oci, report or (lambda n: None), limits)
        try:
            if store.layers.has(src.diff_id):
                return job.finish()
            result: list[Descriptor] = []

            def finish() -> UnpackResult:
                desc = job.finish()
                result.append(desc)
                return UnpackResult(job.size, desc.digest, desc.size, desc.media_type)

            try:
                store.layers.unpack(src.diff_id, job, finish, **limits.unpack_kwargs())
            except OSError as exc:
                raise _unpack_error(job, exc) from exc
            return result[0]
        finally:
            job.close()


def _unpack_error(job: _Ingest, exc: OSError) -> BaseException:
    """An unpack failure: a digest mismatch when the content is corrupt (the
    usual cause of a bad tar header), else the unpacker's own error."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc
    if exc.errno == errno.EFBIG:
        return unpack_limit_error(job.src.what, exc)
    try:
        job.finish()
    except DigestMismatchError as mismatch:
        return mismatch
    except Exception as other:  # noqa: BLE001 - report the original failure
        log.debug(f"after the unpack error: {other}")
    return ImageError(f"cannot unpack {job.src.what}: {exc}")


def _existing(store: Store, src: LayerSource) -> Descriptor | None:
    if not store.layers.has(src.diff_id):
        return None
    desc = src.descriptor
    if desc is not None:
        return desc if store.blobs.has(desc.digest, desc.size) else None
    info = store.layers.info(src.diff_id)
    if info and info.compressed_digest and store.blobs.has(info.compressed_digest):
        size = store.blobs.size(info.compressed_digest)
        return Descriptor(info.media_type or OCI_LAYER_GZIP, info.compressed_digest, size)
    return None


# ---------------------------------------------------------------- back to a tar


def iter_tar(path: str, media_type: str, diff_id: str, size: int) -> Iterator[bytes]:
    """A stored layer blob as its uncompressed tar, in chunks; the diffID and the
    size are checked at the end (a corrupt store raises instead of lying)."""
    inflater = Inflater(kind_of(media_type))
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while raw := f.read(CHUNK):
            out = inflater.feed(raw)
            if out:
                digest.update(out)
                done += len(out)
                yield out
    actual = "sha256:" + digest.hexdigest()
    if actual != diff_id or done != size or not inflater.ended:
        raise DigestMismatchError(
            f"layer {diff_id[7:19]} in the store is corrupt (content has digest {actual})",
            hint="remove the image and pull or load it again",
        )
