"""Pull an image from a registry into the store.

    reference -> manifest (an index picks the platform) -> config
              -> layers, in parallel threads, each streamed once:
                 network -> (compressed bytes to blobs/tmp) -> inflate (ISA-L
                 gzip, zstd, or none) -> diffID hash -> pipe -> rl_untar (C)
              -> manifest + config blobs, then the name in index.json

Nothing is staged: the compressed blob is written while it streams (save and
push need it), the decompressed tar never touches the disk. A layer whose
diffID is already unpacked, and whose blob is present, is skipped, so a warm
pull costs the manifest request only. The whole pull holds the store lock
shared; each layer is unpacked under its own lock, so two pulls of overlapping
images unpack a shared layer once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol

from rootless.errors import (
    DigestMismatchError,
    ImageError,
    ManifestError,
    RootlessError,
    StoreError,
)
from rootless.image.layerio import Inflater
from rootless.image.limits import LayerLimits, unpack_limit_error
from rootless.image.reference import Reference
from rootless.image.types import (
    GZIP_LAYER_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    PLAIN_LAYER_TYPES,
    ZSTD_LAYER_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)

if TYPE_CHECKING:
    from rootless.image.registry import RegistryClient
    from rootless.image.transport import Transport
    from rootless.store import ImageRecord, Store
    from rootless.store.blobs import BlobWriter
    from rootless.store.layers import UnpackResult

CHUNK = 1 << 20
DEFAULT_JOBS = 4


class Progress(Protocol):
    """What a pull reports (rootless.cli.progress renders it on a terminal)."""

    def begin(self, ref: Reference) -> None: ...

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None: ...

    def end(self, ref: Reference, digest: str, downloaded: bool) -> None: ...


class NoProgress:
    def begin(self, ref: Reference) -> None:
        pass

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None:
        pass

    def end(self, ref: Reference, digest: str, downloaded: bool) -> None:
        pass


class PullOptions:
    """How to pull: platform ("os/arch[/variant]", default the host's), TLS
    verification (None: the registry's default), parallel layers, progress."""

    __slots__ = ("jobs", "platform", "progress", "timeout", "tls_verify")

    def __init__(
        self,
        platform: str | None = None,
        tls_verify: bool | None = None,
        jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.platform = platform
        self.tls_verify = tls_verify
        self.jobs = jobs
        self.progress: Progress = progress if progress is not None else NoProgress()


class PullResult:
    """What a pull stored: the image, the name it got (None for a digest
    pull), and whether any layer had to be fetched."""

    __slots__ = ("downloaded", "image", "name")

    def __init__(self, image: ImageRecord, name: str | None, downloaded: bool) -> None:
        self.image = image
        self.name = name
        self.downloaded = downloaded


class PullCancelled(Exception):
    """Another layer of the same pull failed."""


# ---------------------------------------------------------------- decompression


def inflater_for(media_type: str) -> Inflater:
    """Incremental decompressor for a layer's media type (gzip, zstd or none)."""
    return Inflater(_kind(media_type))


def _kind(media_type: str) -> str:
    if media_type in GZIP_LAYER_TYPES:
        return "gzip"
    if media_type in ZSTD_LAYER_TYPES:
        return "zstd"
    if media_type in PLAIN_LAYER_TYPES:
        return "none"
    raise ManifestError(f"unsupported layer media type {media_type!r}")


# ---------------------------------------------------------------- one layer


class _LayerStream:
    """The bytes of one layer: read compressed, optionally tee'd into the blob
    store, inflated and hashed; iterate to get tar chunks."""

    def __init__(
        self,
        source: BinaryIO,
        desc: Descriptor,
        writer: BlobWriter | None,
        progress: Progress,
        cancel: threading.Event,
        limits: LayerLimits,
    ) -> None:
        self.source = source
        self.desc = desc
        self.limits = limits
        self.writer = writer
        self.progress = progress
        self.cancel = cancel
        self.inflater = inflater_for(desc.media_type)
        self.diff_hash = hashlib.sha256()
        self.size = 0
        self.compressed = 0
        self._last = 0.0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if self.cancel.is_set():
                raise PullCancelled()
            chunk = self.source.read(CHUNK)
            if not chunk:
                break
            self.compressed += len(chunk)
            if self.writer is not None:
                self.writer.write(chunk)
            self._report()
            try:
                out = self.inflater.feed(chunk)
            except Exception as exc:
                raise self._corrupt(exc) from exc
            if out:
                self.diff_hash.update(out)
                self.size += len(out)
                self.limits.check_layer_stream(self.size, f"layer {self.desc.digest}")
                yield out

    def _corrupt(self, exc: Exception) -> BaseException:
        """A decompression error: read the rest, so that a digest mismatch (the
        usual cause) is what gets reported."""
        try:
            while self.source.read(CHUNK):
                pass
        except RootlessError as verified:
            return verified
        return DigestMismatchError(
            f"layer {self.desc.digest}: corrupt {self.inflater.kind} data ({exc})",
            hint="the image is corrupt in the registry",
        )

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self.progress.layer(self.desc.digest, "Downloading", self.compressed, self.desc.size)

    def drain(self) -> None:
        """Consume what the unpacker left unread (nothing, for a good archive)."""
        for _ in self:
            pass

    def check(self, diff_id: str) -> UnpackResult:
        from rootless.store.layers import UnpackResult

        self.drain()
        where = f"layer {self.desc.digest}"
        if not self.inflater.ended:
            raise DigestMismatchError(f"{where}: the compressed stream is truncated")
        actual = "sha256:" + self.diff_hash.hexdigest()
        if actual != diff_id:
            raise DigestMismatchError(
                f"{where}: uncompressed content has digest {actual}, the image config says "
                f"{diff_id}",
                hint="the image is corrupt in the registry",
            )
        if self.writer is not None:
            self.writer.commit()
        return UnpackResult(self.size, self.desc.digest, self.compressed, self.desc.media_type)


class _Job:
    """What every layer task of one pull shares."""

    def __init__(
        self, store: Store, client: RegistryClient | None, repository: str, progress: Progress
    ) -> None:
        self.store = store
        self.client = client
        self.repository = repository
        self.progress = progress
        self.cancel = threading.Event()
        self.fetched = False
        self.limits = LayerLimits.from_environment()


def _open_source(job: _Job, desc: Descriptor, local: bool) -> BinaryIO:
    if local:
        return open(job.store.blobs.path(desc.digest), "rb")
    assert job.client is not None
    reader = job.client.open_blob(job.repository, desc.digest, desc.size)
    return reader  # type: ignore[return-value]


def _ensure_layer(job: _Job, desc: Descriptor, diff_id: str) -> None:
    store = job.store
    with store.layers.lock(diff_id):
        have_layer = store.layers.has(diff_id)
        have_blob = store.blobs.has(desc.digest, desc.size)
        if have_layer and have_blob:
            job.progress.layer(desc.digest, "Already exists")
            return
        job.progress.layer(desc.digest, "Pulling fs layer", 0, desc.size)
        source = _open_source(job, desc, local=have_blob)
        writer = None if have_blob else store.blobs.writer(desc.digest, desc.size, verify=False)
        job.fetched = job.fetched or not have_blob
        try:
            stream = _LayerStream(source, desc, writer, job.progress, job.cancel, job.limits)
            if have_layer:
                stream.check(diff_id)
                job.progress.layer(desc.digest, "Download complete")
                return
            try:
                store.layers.unpack(
                    diff_id, stream, lambda: stream.check(diff_id), **job.limits.unpack_kwargs()
                )
            except OSError as exc:
                raise _unpack_error(desc, exc) from exc
        finally:
            source.close()
            if writer is not None:
                writer.abort()
    job.progress.layer(desc.digest, "Pull complete")


def _unpack_error(desc: Descriptor, exc: OSError) -> BaseException:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc
    if exc.errno == errno.EFBIG:
        return unpack_limit_error(f"layer {desc.digest}", exc)
    hint = None
    if exc.errno == errno.EINVAL and "chown" in str(exc):
        hint = "the layer uses user or group ids outside your subordinate ranges (/etc/subuid)"
    return ImageError(f"cannot unpack layer {desc.digest[7:19]}: {exc}", hint=hint)


def _fetch_layers(job: _Job, pairs: list[tuple[Descriptor, str]], jobs: int) -> None:
    if len(pairs) <= 1 or jobs <= 1:
        for desc, diff_id in pairs:
            _ensure_layer(job, desc, diff_id)
        return
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=min(jobs, len(pairs))) as pool:
        futures = [pool.submit(_ensure_layer, job, d, i) for d, i in pairs]
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and f.exception() is not None for f in futures):
            job.cancel.set()
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        real = [e for e in errors if not isinstance(e, PullCancelled)]
        raise (real or errors)[0]


# ---------------------------------------------------------------- manifest, config


def _want_platform(options: PullOptions) -> object:
    from rootless.image.manifest import host_platform, parse_platform

    return parse_platform(options.platform) if options.platform else host_platform()


def _resolve_manifest(
    client: RegistryClient, ref: Reference, options: PullOptions
) -> tuple[Manifest, bytes, str, str]:
    """(manifest, its bytes, its digest, the digest the reference resolved to)."""
    from rootless.image.manifest import select_platform

    fetched = client.get_manifest(ref.repository, ref.identifier)
    top_digest = fetched.digest
    parsed = fetched.parse(context=str(ref))
    if isinstance(parsed, Index):
        want = _want_platform(options)
        desc = select_platform(parsed, want, context=str(ref))  # type: ignore[arg-type]
        accept = tuple(sorted(MANIFEST_TYPES))
        fetched = client.get_manifest(ref.repository, desc.digest, accept=accept)
        parsed = fetched.parse(context=f"{ref} ({want})")
        if not isinstance(parsed, Manifest):
            raise ManifestError(
                f"{ref}: the index entry for {want} is not an image manifest "
                "(an index inside an index is not supported)"
            )
    for layer in parsed.layers:  # refused before anything is downloaded
        try:
            _kind(layer.media_type)
        except ManifestError as exc:
            raise ManifestError(f"{ref}: layer {layer.digest}: {exc.message}") from None
    return parsed, fetched.data, fetched.digest, top_digest


def _config(
    store: Store, client: RegistryClient, ref: Reference, manifest: Manifest
) -> tuple[ImageConfig, bytes]:
    from rootless.image.manifest import parse_image_config

    desc = manifest.config
    # under a lock, and kept at once: concurrent pulls (srun -n 4) fetch it once
    with store.layers.lock(desc.digest):
        if store.blobs.has(desc.digest, desc.size):
            data = store.blobs.read(desc.digest)
        else:
            data = client.fetch_blob(ref.repository, desc.digest, desc.size)
            store.blobs.put(data, desc.digest)
    config = parse_image_config(data, context=f"config of {ref}")
    if len(config.diff_ids) != len(manifest.layers):
        raise ManifestError(
            f"{ref}: the manifest has {len(manifest.layers)} layers but the config lists "
            f"{len(config.diff_ids)} diff_ids"
        )
    return config, data


def _check_options(options: PullOptions) -> None:
    LayerLimits.from_environment()  # a bad ROOTLESS_MAX_* fails before any request
    if options.platform:
        from rootless.image.manifest import parse_platform

        parse_platform(options.platform)


# ---------------------------------------------------------------- pull


def pull(store: Store, text: str, options: PullOptions | None = None) -> PullResult:
    """Pull `text` (a reference) into `store`; returns what was stored."""
    options = options or PullOptions()
    ref = Reference.parse(text)
    _check_options(options)
    try:
        return _pull(store, ref, options)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(
                f"no space left on the device holding {store.root} while pulling {ref.familiar()}",
                hint="free some space (rootless image prune) and pull again",
            ) from exc
        if isinstance(exc, RootlessError):
            raise
        raise StoreError(f"pulling {ref.familiar()}: {exc}") from exc


def _transport() -> Transport:
    """The standard transport, except that an unverified TLS context (loopback
    and insecure registries) skips loading the system CA store (~20 ms)."""
    import ssl

    from rootless.image.transport import HTTPTransport

    class _Transport(HTTPTransport):
        def _context(self, verify: bool, ca_certs: tuple[str, ...]) -> ssl.SSLContext:
            if verify:
                return super()._context(verify, ca_certs)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx

    return _Transport()


def _client_options(options: PullOptions) -> dict[str, object]:
    kwargs: dict[str, object] = {"tls_verify": options.tls_verify}
    if options.timeout is not None:
        kwargs["timeout"] = options.timeout
    return kwargs


def _pull(store: Store, ref: Reference, options: PullOptions) -> PullResult:
    from rootless.image.registry import RegistryClient

    options.progress.begin(ref)
    transport = _transport()
    with (
        contextlib.closing(transport),
        RegistryClient.for_reference(
            ref, transport=transport, **_client_options(options)
        ) as client,
    ):
        manifest, manifest_bytes, digest, top_digest = _resolve_manifest(client, ref, options)
        job = _Job(store, client, ref.repository, options.progress)
        with store.lock(shared=True):
            config, config_bytes = _config(store, client, ref, manifest)
            pairs = list(zip(manifest.layers, config.diff_ids, strict=True))
            missing = []
            for desc, diff_id in pairs:
                if store.layers.has(diff_id) and store.blobs.has(desc.digest, desc.size):
                    options.progress.layer(desc.digest, "Already exists")
                else:
                    missing.append((desc, diff_id))
            if missing:
                store.blobs.sweep_tmp()
            _fetch_layers(job, missing, options.jobs)
            name = _store_image(
                store, ref, manifest, manifest_bytes, digest, top_digest, config_bytes, config
            )
    record = store.image(digest if name is None else name)
    options.progress.end(ref, top_digest, job.fetched)
    return PullResult(record, name, job.fetched)


def _store_image(
    store: Store,
    ref: Reference,
    manifest: Manifest,
    manifest_bytes: bytes,
    digest: str,
    top_digest: str,
    config_bytes: bytes,
    config: ImageConfig,
) -> str | None:
    store.blobs.put(config_bytes, manifest.config.digest)
    store.blobs.put(manifest_bytes, digest)
    name = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None
    platform = {"os": config.os, "architecture": config.architecture}
    if config.variant:
        platform["variant"] = config.variant
    store.index.add(
        digest,
        manifest.media_type,
        len(manifest_bytes),
        name,
        repo_digest=f"{ref.name}@{top_digest}",
        platform=platform,
    )
    return name


__all__ = ["INDEX_TYPES", "NoProgress", "Progress", "PullOptions", "PullResult", "pull"]


def registry_timeout() -> float | None:
    """$ROOTLESS_REGISTRY_TIMEOUT: seconds for connecting and each read (default 30)."""
    import os

    from rootless.errors import UsageError

    text = os.environ.get("ROOTLESS_REGISTRY_TIMEOUT")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid ROOTLESS_REGISTRY_TIMEOUT {text!r}: a number of seconds") from None
    if value <= 0:
        raise UsageError("ROOTLESS_REGISTRY_TIMEOUT must be positive")
    return value
