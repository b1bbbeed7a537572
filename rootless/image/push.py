"""Push an image from the store to a registry (OCI distribution spec).

    image (name or id) -> destination reference -> every blob (config + layers,
    in parallel): HEAD in the target repository (present: skip) -> else a
    cross-repository mount from a repository of the same registry the image
    was pulled from (`repo_digests`) -> else an upload, monolithic (POST + PUT)
    or chunked (POST + PATCH... + PUT, `ROOTLESS_PUSH_CHUNK_SIZE` or
    `PushOptions.chunk_size`) -> the manifest PUT under the tag, with the
    stored bytes and media type, so the digest is the one `images --digests`
    and `pull` know.

Uploads are retried from the start on dropped connections and timeouts (a blob
PUT is idempotent: content-addressed). The store is only read: a layer whose
compressed blob is missing (it should not happen: pull, load, import and commit
all write one) fails with a clear message instead of being rebuilt.

Every HTTP request is logged at debug level (`--log-level debug`) as
`http METHOD PATH -> STATUS`, which is how the tests count uploads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeVar, cast

from rootless import log
from rootless.errors import InvalidReferenceError, StoreError, UsageError
from rootless.image.reference import Reference
from rootless.image.transport import Request, Response, Transport, TransportError
from rootless.image.types import Descriptor

if TYPE_CHECKING:
    from rootless.image.registry import RegistryClient
    from rootless.store import ImageRecord, Store

CHUNK_ENV = "ROOTLESS_PUSH_CHUNK_SIZE"
DEFAULT_JOBS = 4
DEFAULT_RETRIES = 3
_RETRY_KINDS = frozenset({"reset", "timeout", "network"})
T = TypeVar("T")


class PushProgress(Protocol):
    """What a push reports (rootless.cli.transfer_progress draws it)."""

    def note(self, text: str) -> None: ...

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None: ...


class NoPushProgress:
    def note(self, text: str) -> None:
        pass

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None:
        pass


@dataclass
class PushOptions:
    tls_verify: bool | None = None
    progress: PushProgress = field(default_factory=NoPushProgress)
    chunk_size: int | None = None  # None: $ROOTLESS_PUSH_CHUNK_SIZE, else monolithic
    jobs: int = DEFAULT_JOBS
    retries: int = DEFAULT_RETRIES
    timeout: float | None = None
    transport: Transport | None = None  # tests plug a fake registry here


@dataclass
class PushResult:
    """Where the image went and what each blob cost."""

    reference: Reference
    digest: str
    size: int
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- request tracing


class TracingTransport:
    """Wraps a transport: logs each request at debug level, counts them."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []

    def send(self, request: Request) -> Response:
        response = self.inner.send(request)
        parts = urllib.parse.urlsplit(request.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        with self.lock:
            self.requests.append((request.method, path, response.status))
        log.debug(f"http {request.method} {path} -> {response.status}")
        return response

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------- what to push


def destination(record: ImageRecord, image: str, dest: str | None) -> Reference:
    """The reference to push to: DESTINATION, else the name IMAGE gave."""
    text = dest or image
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        if dest is None:
            raise UsageError(
                f"{image} is an image ID: give a destination, e.g. "
                f"rootless push {image} registry.example.com/name:tag"
            ) from None
        raise
    if ref.digest:
        raise UsageError(f"cannot push to a digest reference ({text}): give a tag")
    if dest is None and f"{ref.name}:{ref.tag}" not in record.names:
        raise UsageError(
            f"{image} is not a name of the image: give a destination, e.g. "
            f"rootless push {image} registry.example.com/name:tag"
        )
    return ref


def blobs_of(store: Store, record: ImageRecord) -> list[Descriptor]:
    """Layers then config, each checked to be in the store with its size."""
    out: list[Descriptor] = []
    for desc, diff_id in zip(record.manifest.layers, record.diff_ids, strict=True):
        if not store.blobs.has(desc.digest, desc.size):
            raise StoreError(
                f"cannot push {record.short_id}: the compressed blob {desc.digest[7:19]} of "
                f"layer {diff_id[7:19]} is missing from the store",
                hint="pull or load the image again; rootless does not recompress layers on push",
            )
        out.append(desc)
    if not store.blobs.has(record.config_digest):
        raise StoreError(f"cannot push {record.short_id}: its config blob is missing")
    out.append(record.manifest.config)
    return out


def mount_sources(record: ImageRecord, ref: Reference) -> list[str]:
    """Repositories of the same registry the image came from (cross-repo mount)."""
    sources: list[str] = []
    for repo_digest in record.repo_digests:
        name = repo_digest.split("@", 1)[0]
        try:
            origin = Reference.parse(name)
        except InvalidReferenceError:
            continue
        same_registry = origin.registry == ref.registry
        if same_registry and origin.repository not in (ref.repository, *sources):
            sources.append(origin.repository)
    return sources


def chunk_size(options: PushOptions) -> int | None:
    if options.chunk_size is not None:
        return options.chunk_size or None
    text = os.environ.get(CHUNK_ENV, "")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"invalid {CHUNK_ENV} {text!r}: a positive number of bytes")
    return int(text)


# ---------------------------------------------------------------- one blob


class _Reader:
    """A blob file read for upload, reporting progress."""

    def __init__(self, path: str, desc: Descriptor, progress: PushProgress) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by the caller
        self.desc = desc
        self.progress = progress
        self.done = 0
        self.last = 0.0

    def read(self, n: int = -1, /) -> bytes:
        data = self.file.read(n)
        self.done += len(data)
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.progress.layer(self.desc.digest, "Pushing", self.done, self.desc.size)
        return data

    def close(self) -> None:
        self.file.close()


@dataclass
class _Job:
    store: Store
    client: RegistryClient
    repository: str
    sources: list[str]
    options: PushOptions
    chunk: int | None
    result: PushResult
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, digest: str) -> None:
        with self.lock:
            getattr(self.result, kind).append(digest)


def _push_blob(job: _Job, desc: Descriptor, is_config: bool) -> None:
    progress = job.options.progress if not is_config else NoPushProgress()
    client, repo = job.client, job.repository
    progress.layer(desc.digest, "Preparing")
    if _retrying(job, lambda: client.blob_exists(repo, desc.digest)) is not None:
        job.record("existing", desc.digest)
        progress.layer(desc.digest, "Layer already exists")
        return
    for source in job.sources:
        if _retrying(job, _mount(client, repo, desc.digest, source)):
            job.record("mounted", desc.digest)
            progress.layer(desc.digest, f"Mounted from {source}")
            return
    _retrying(job, lambda: _upload(job, desc, progress))
    job.record("uploaded", desc.digest)
    progress.layer(desc.digest, "Pushed")


def _mount(client: RegistryClient, repo: str, digest: str, source: str) -> Callable[[], bool]:
    return lambda: client.mount_blob(repo, digest, source)


def _upload(job: _Job, desc: Descriptor, progress: PushProgress) -> None:
    reader = _Reader(job.store.blobs.path(desc.digest), desc, progress)
    try:
        job.client.upload_blob(
            job.repository,
            desc.digest,
            cast(BinaryIO, reader),  # only read() is used
            desc.size,
            chunk_size=job.chunk,
        )
    finally:
        reader.close()


def _retrying(job: _Job, call: Callable[[], T]) -> T:
    """Run `call()`; again (with backoff) after a dropped connection or timeout."""
    attempt = 0
    while True:
        try:
            return call()
        except TransportError as exc:
            if exc.kind not in _RETRY_KINDS or attempt >= job.options.retries:
                raise
            attempt += 1
            log.debug(f"retrying after {exc.kind} ({attempt}/{job.options.retries}): {exc}")
            job.client.sleep_before_retry(attempt)


def _push_blobs(job: _Job, blobs: list[Descriptor]) -> None:
    config = blobs[-1]
    if job.options.jobs <= 1 or len(blobs) <= 1:
        for desc in blobs:
            _push_blob(job, desc, desc is config)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(job.options.jobs, len(blobs))) as pool:
        futures = [pool.submit(_push_blob, job, d, d is config) for d in blobs]
        errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise errors[0]


# ---------------------------------------------------------------- push


def push(
    store: Store, image: str, dest: str | None = None, options: PushOptions | None = None
) -> PushResult:
    """Push `image` (a name or id in the store) to `dest` (default: its name)."""
    options = options or PushOptions()
    record = store.image(image)
    ref = destination(record, image, dest)
    blobs = blobs_of(store, record)
    chunk = chunk_size(options)
    options.progress.note(f"The push refers to repository [{ref.name}]")
    from rootless.image.registry import RegistryClient
    from rootless.image.transport import HTTPTransport

    transport = TracingTransport(options.transport or HTTPTransport())
    kwargs: dict[str, object] = {"tls_verify": options.tls_verify, "transport": transport}
    if options.timeout is not None:
        kwargs["timeout"] = options.timeout
    with contextlib.closing(transport), RegistryClient.for_reference(ref, **kwargs) as client:
        result = PushResult(ref, record.manifest_digest, 0)
        job = _Job(
            store, client, ref.repository, mount_sources(record, ref), options, chunk, result
        )
        _push_blobs(job, blobs)
        data = store.blobs.read(record.manifest_digest)
        tag = ref.tag or "latest"
        _retrying(job, lambda: client.put_manifest(ref.repository, tag, data, record.media_type))
        result.size = len(data)
    return result


__all__ = [
    "CHUNK_ENV",
    "NoPushProgress",
    "PushOptions",
    "PushProgress",
    "PushResult",
    "TracingTransport",
    "destination",
    "push",
]
