"""OCI distribution API client (pull and push primitives) over `Transport`.

One `RegistryClient` talks to one registry host. On first use it pings `/v2/` to pick
the scheme (verified HTTPS; for insecure registries unverified HTTPS, falling back to
plain HTTP) and to learn the authentication challenge, so later requests carry the
right `Authorization` up front.

Guarantees:
- manifests are capped at 4 MiB and configs (`fetch_blob`) at 8 MiB by default;
- a manifest fetched by digest is checked against it; one fetched by tag is
  checked against `Docker-Content-Digest` when the registry sends one;
- `open_blob` returns a streaming reader that hashes while reading, checks size and
  digest at the end, and resumes a dropped connection with `Range: bytes=N-` (or
  restarts and skips N bytes when the server ignores ranges);
- idempotent requests (GET/HEAD) are retried on dropped connections, timeouts, 429 and
  5xx, with exponential backoff;
- every failure is a `RegistryError` (or `ManifestError`/`DigestMismatchError`) with one
  line quoting the registry's own error JSON (`manifest unknown: ...`) and a hint.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

from rootless.errors import DigestMismatchError, ManifestError, RegistryError
from rootless.image.auth import Authenticator, Credentials, CredentialStore
from rootless.image.insecure import InsecurePolicy, ca_files_for
from rootless.image.manifest import parse_manifest
from rootless.image.reference import Reference
from rootless.image.transport import (
    Headers,
    HTTPTransport,
    Request,
    Response,
    Transport,
    TransportError,
)
from rootless.image.types import (
    MANIFEST_ACCEPT,
    SCHEMA1_TYPES,
    Descriptor,
    Index,
    Manifest,
    is_digest,
    validate_digest,
)

MANIFEST_MAX_BYTES = 4 << 20
CONFIG_MAX_BYTES = 8 << 20
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_CHUNK = 1 << 16
_RETRY_KINDS = frozenset({"reset", "timeout"})
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

_UNSET = Credentials(username="\0unset")


class UnsupportedRegistryError(RegistryError):
    """The host does not speak the distribution API v2."""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _hasher(digest: str) -> hashlib._Hash:
    return hashlib.new(digest.split(":", 1)[0])


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


# ---------------------------------------------------------------- registry error JSON


def registry_error_text(body: bytes) -> str:
    """`code words: message` for each entry of a distribution error body, '; '-joined."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body[:200].decode("utf-8", "replace").strip() if body else ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors:
        if isinstance(item, dict):
            parts.append(_one_error(item))
    return "; ".join(p for p in parts if p)


def _one_error(item: dict[str, object]) -> str:
    code = str(item.get("code") or "").lower().replace("_", " ")
    message = str(item.get("message") or "")
    if not message or message.lower() == code:
        return code
    return f"{code}: {message}" if code else message


@dataclass(frozen=True)
class FetchedManifest:
    """Manifest bytes as served, with their media type and verified digest."""

    data: bytes
    media_type: str
    digest: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))

    def parse(self, context: str = "manifest") -> Manifest | Index:
        return parse_manifest(self.data, self.media_type, context=context)


# ---------------------------------------------------------------- client


class RegistryClient:
    """Distribution API client for one registry (host[:port])."""

    def __init__(
        self,
        registry: str,
        *,
        transport: Transport | None = None,
        credentials: Credentials | None = _UNSET,
        tls_verify: bool | None = None,
        insecure_policy: InsecurePolicy | None = None,
        ca_certs: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
    ) -> None:
        self.registry = registry
        self.transport: Transport = transport if transport is not None else HTTPTransport()
        self._own_transport = transport is None
        if credentials is _UNSET:
            credentials = CredentialStore.from_environment().lookup(registry)
        policy = (
            insecure_policy if insecure_policy is not None else InsecurePolicy.from_environment()
        )
        self.insecure = policy.is_insecure(registry, tls_verify)
        self.ca_certs = tuple(ca_certs) if ca_certs is not None else ca_files_for(registry)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.auth = Authenticator(
            self.transport,
            registry,
            credentials,
            verify=not self.insecure,
            timeout=timeout,
            ca_certs=self.ca_certs,
        )
        self._base: str | None = None
        self._ready = threading.Lock()

    @classmethod
    def for_reference(cls, ref: Reference, **kwargs: Any) -> RegistryClient:
        """A client for `ref`'s registry, with credentials looked up for its repository."""
        if "credentials" not in kwargs:
            kwargs["credentials"] = CredentialStore.from_environment().lookup(
                ref.domain, ref.repository
            )
        return cls(ref.registry, **kwargs)

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ connection setup

    @property
    def base_url(self) -> str:
        """`https://host` (or `http://host` for an insecure registry without TLS)."""
        with self._ready:
            if self._base is None:
                self._base = self._discover()
            return self._base

    def ping(self) -> None:
        """Check that the registry answers the v2 API (and learn its auth challenge)."""
        with self._ready:
            self._base = self._discover()

    def check_login(self) -> None:
        """Verify the credentials (for `rootless login`): GET /v2/ authenticated.

        Raises AuthenticationError when the registry or its token service refuses.
        """
        self.ping()
        if self.auth.challenge is None:
            return  # the registry needs no authentication at all
        response = self.request("GET", "/v2/", scopes=())
        if response.status != 200:
            raise self.error(response, f"logging in to {self.registry}")
        response.close()

    def _discover(self) -> str:
        candidates = ["https"] if not self.insecure else ["https", "http"]
        last: TransportError | None = None
        for scheme in candidates:
            base = f"{scheme}://{self.registry}"
            try:
                self._ping(base)
                return base
            except TransportError as exc:
                if exc.kind not in ("tls", "tls-verify", "refused", "reset", "protocol"):
                    raise
                last = exc
        assert last is not None
        raise last

    def _ping(self, base: str) -> None:
        request = Request(
            "GET",
            base + "/v2/",
            timeout=self.timeout,
            verify=not self.insecure,
            ca_certs=self.ca_certs,
        )
        with self.transport.send(request) as response:
            response.read_all(1 << 16)
            status, headers = response.status, response.headers
        if status == 401:
            self.auth.learn(headers.get("WWW-Authenticate"))
        elif status == 404:
            raise UnsupportedRegistryError(
                f"{self.registry} does not serve the registry API (GET /v2/ is 404)",
                hint="check the registry host name and port",
            )
        elif status >= 400 and status not in _RETRY_STATUS:
            raise RegistryError(f"registry {self.registry} answered /v2/ with HTTP {status}")

    # ------------------------------------------------------------ request core

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: tuple[str, ...] = (),
        headers: Headers | None = None,
        body: bytes | BinaryIO | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        """Send one request with auth, retries and error mapping below HTTP status."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        idempotent = method in ("GET", "HEAD")
        attempt = 0
        reauthed = False
        while True:
            req = self._build(method, url, scopes, headers, body, follow_redirects)
            try:
                response = self.transport.send(req)
            except TransportError as exc:
                if not idempotent or exc.kind not in _RETRY_KINDS or attempt >= self.retries:
                    raise
                attempt += 1
                self.sleep_before_retry(attempt)
                continue
            replayable = body is None or isinstance(body, bytes)
            if response.status == 401 and not reauthed and replayable:
                self._reauth(response, scopes)
                reauthed = True
                continue
            if idempotent and response.status in _RETRY_STATUS and attempt < self.retries:
                response.close()
                attempt += 1
                self.sleep_before_retry(attempt, response.headers.get("Retry-After"))
                continue
            return response

    def _build(
        self,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        headers: Headers | None,
        body: bytes | BinaryIO | None,
        follow_redirects: bool,
    ) -> Request:
        hdrs = headers.copy() if headers is not None else Headers()
        if urllib.parse.urlsplit(url).netloc == self.registry:
            authorization = self.auth.authorization(scopes)
            if authorization:
                hdrs.set("Authorization", authorization)
        return Request(
            method,
            url,
            hdrs,
            body,
            self.timeout,
            not self.insecure,
            follow_redirects,
            self.ca_certs,
        )

    def _reauth(self, response: Response, scopes: tuple[str, ...]) -> None:
        """After a 401: learn the (new) challenge and drop the cached token, or fail."""
        body = response.read_all(1 << 16)
        response.close()
        if not self.auth.learn(response.headers.get("WWW-Authenticate")):
            raise self.auth.failure(registry_error_text(body))
        self.auth.forget(scopes)

    def sleep_before_retry(self, attempt: int, retry_after: str | None = None) -> None:
        """Exponential backoff (honouring a numeric Retry-After, capped at 30 s)."""
        delay = self.backoff * (2 ** (attempt - 1))
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 30.0))
        if delay > 0:
            time.sleep(delay)

    def error(self, response: Response, what: str) -> RegistryError:
        """The RegistryError for a failed response (reads and closes it)."""
        body = response.read_all(1 << 16)
        response.close()
        text = registry_error_text(body)
        status = response.status
        if status == 401:
            return self.auth.failure(text)
        if status == 403:
            return RegistryError(
                f"{what}: access denied" + (f": {text}" if text else ""),
                hint=f"check the name and your access rights (`rootless login {self.registry}`)",
            )
        if status == 429:
            return RegistryError(
                f"{what}: too many requests" + (f": {text}" if text else ""),
                hint="wait a while, or log in for a higher rate limit",
            )
        if status == 404 and not text:
            return RegistryError(f"{what}: not found")
        return RegistryError(
            f"{what}: {text}" if text else f"{what}: HTTP {status} {response.reason}"
        )

    def _where(self, repository: str) -> str:
        return f"{self.registry}/{repository}"

    # ------------------------------------------------------------ manifests

    def get_manifest(
        self,
        repository: str,
        reference: str,
        *,
        accept: Sequence[str] = MANIFEST_ACCEPT,
        max_bytes: int = MANIFEST_MAX_BYTES,
    ) -> FetchedManifest:
        """GET a manifest or index by tag or digest; size-capped and digest-checked."""
        what = f"reading manifest {reference} in {self._where(repository)}"
        headers = Headers({"Accept": ", ".join(accept)})
        path = f"/v2/{repository}/manifests/{reference}"
        response = self.request("GET", path, scopes=(pull_scope(repository),), headers=headers)
        if response.status != 200:
            raise self.error(response, what)
        with response:
            data = _read_capped(
                response, max_bytes, f"manifest {reference} in {self._where(repository)}"
            )
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        digest = _manifest_digest(data, reference, response.headers, media_type, what)
        return FetchedManifest(data, media_type, digest)

    def head_manifest(
        self, repository: str, reference: str, *, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> Descriptor | None:
        """HEAD a manifest: its descriptor, or None when it does not exist."""
        what = f"checking manifest {reference} in {self._where(repository)}"
        headers = Headers({"Accept": ", ".join(accept)})
        path = f"/v2/{repository}/manifests/{reference}"
        response = self.request("HEAD", path, scopes=(pull_scope(repository),), headers=headers)
        if response.status == 404:
            response.close()
            return None
        if response.status != 200:
            raise self.error(response, what)
        response.close()
        digest = response.headers.get("Docker-Content-Digest") or ""
        size = response.headers.get("Content-Length") or ""
        media_type = (response.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if not digest or not size.isdigit():
            fetched = self.get_manifest(repository, reference, accept=accept)
            return fetched.descriptor
        return Descriptor(media_type, validate_digest(digest), int(size))

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag (or its digest); return its digest."""
        digest = compute_digest(data)
        what = f"writing manifest {reference} to {self._where(repository)}"
        headers = Headers({"Content-Type": media_type})
        path = f"/v2/{repository}/manifests/{reference}"
        response = self.request(
            "PUT", path, scopes=(push_scope(repository),), headers=headers, body=data
        )
        if response.status not in (200, 201, 202):
            raise self.error(response, what)
        response.close()
        served = response.headers.get("Docker-Content-Digest")
        if served and served.startswith("sha256:") and served != digest:
            raise DigestMismatchError(f"{what}: registry computed {served}, expected {digest}")
        return digest

    def list_tags(self, repository: str) -> list[str]:
        """All tags of a repository (following `Link` pagination)."""
        tags: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list"
        while path:
            response = self.request("GET", path, scopes=(pull_scope(repository),))
            if response.status != 200:
                raise self.error(response, f"listing tags of {self._where(repository)}")
            with response:
                body = _read_capped(response, MANIFEST_MAX_BYTES, "tag list")
            tags += _tags_from(body)
            path = _next_link(response.headers.get("Link"))
        return tags

    # ------------------------------------------------------------ blobs (pull)

    def open_blob(self, repository: str, digest: str, size: int | None = None) -> BlobReader:
        """Stream a blob; the reader verifies size and digest when it reaches the end."""
        reader = BlobReader(self, repository, validate_digest(digest), size)
        reader.start()
        return reader

    def fetch_blob(
        self,
        repository: str,
        digest: str,
        size: int | None = None,
        *,
        max_bytes: int = CONFIG_MAX_BYTES,
    ) -> bytes:
        """Read a small blob (a config) completely, capped and verified."""
        where = f"blob {digest} in {self._where(repository)}"
        if size is not None and size > max_bytes:
            raise ManifestError(f"{where} is {size} bytes, over the {_mib(max_bytes)} limit")
        with self.open_blob(repository, digest, size) as reader:
            if reader.expected_size is not None and reader.expected_size > max_bytes:
                raise ManifestError(
                    f"{where} is {reader.expected_size} bytes, over the {_mib(max_bytes)} limit"
                )
            data = reader.read(max_bytes + 1)
            while len(data) <= max_bytes:
                chunk = reader.read(max_bytes + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) > max_bytes:
                raise ManifestError(f"{where} is over the {_mib(max_bytes)} limit")
        return data

    # ------------------------------------------------------------ blobs (push)

    def blob_exists(self, repository: str, digest: str) -> int | None:
        """HEAD a blob: its size when present, None when not."""
        path = f"/v2/{repository}/blobs/{validate_digest(digest)}"
        response = self.request("HEAD", path, scopes=(push_scope(repository),))
        response.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise self.error(response, f"checking blob {digest} in {self._where(repository)}")
        length = response.headers.get("Content-Length") or ""
        return int(length) if length.isdigit() else 0

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Try a cross-repository mount; True when the registry mounted the blob."""
        location = self._start_upload(repository, digest, from_repository)
        if location is None:
            return True
        self._cancel_upload(location)
        return False

    def upload_blob(
        self,
        repository: str,
        digest: str,
        data: bytes | BinaryIO,
        size: int | None = None,
        *,
        chunk_size: int | None = None,
        mount_from: str | None = None,
    ) -> None:
        """Upload a blob: monolithic (POST + PUT) or chunked (POST + PATCH... + PUT).

        With `mount_from`, first ask the registry to mount it from that repository.
        A stream needs `size`. The registry checks the digest; a mismatch is an error.
        """
        validate_digest(digest)
        if isinstance(data, bytes):
            size = len(data)
        elif size is None:
            raise ValueError("upload_blob: size is required for a stream")
        location = self._start_upload(repository, digest, mount_from)
        if location is None:
            return
        if chunk_size:
            location = self._patch_chunks(repository, location, data, chunk_size)
            self._finish_upload(repository, digest, location, None, 0)
        else:
            self._finish_upload(repository, digest, location, data, size)

    def _start_upload(self, repository: str, digest: str, mount_from: str | None) -> str | None:
        what = f"starting upload of {digest} to {self._where(repository)}"
        path = f"/v2/{repository}/blobs/uploads/"
        scopes: tuple[str, ...] = (push_scope(repository),)
        if mount_from:
            path += "?" + urllib.parse.urlencode({"mount": digest, "from": mount_from})
            scopes += (pull_scope(mount_from),)
        response = self.request("POST", path, scopes=scopes)
        if response.status == 201 and mount_from:
            response.close()
            return None
        if response.status != 202:
            raise self.error(response, what)
        response.close()
        return self._location(response, what)

    def _location(self, response: Response, what: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: registry sent no upload Location")
        return urllib.parse.urljoin(self.base_url + "/", location)

    def _patch_chunks(
        self, repository: str, location: str, data: bytes | BinaryIO, chunk_size: int
    ) -> str:
        what = f"uploading to {self._where(repository)}"
        offset = 0
        stream = data if not isinstance(data, bytes) else None
        while True:
            if stream is not None:
                chunk = stream.read(chunk_size)
            else:
                assert isinstance(data, bytes)
                chunk = data[offset : offset + chunk_size]
            if not chunk:
                return location
            headers = Headers({"Content-Type": "application/octet-stream"})
            headers.set("Content-Range", f"{offset}-{offset + len(chunk) - 1}")
            response = self.request(
                "PATCH", location, scopes=(push_scope(repository),), headers=headers, body=chunk
            )
            if response.status != 202:
                raise self.error(response, what)
            response.close()
            location = self._location(response, what)
            offset += len(chunk)

    def _finish_upload(
        self,
        repository: str,
        digest: str,
        location: str,
        data: bytes | BinaryIO | None,
        size: int | None,
    ) -> None:
        what = f"uploading blob {digest} to {self._where(repository)}"
        sep = "&" if "?" in location else "?"
        url = location + sep + urllib.parse.urlencode({"digest": digest})
        headers = Headers({"Content-Type": "application/octet-stream"})
        headers.set("Content-Length", str(size or 0))
        response = self.request(
            "PUT", url, scopes=(push_scope(repository),), headers=headers, body=data
        )
        if response.status not in (201, 204):
            raise self.error(response, what)
        response.close()

    def _cancel_upload(self, location: str) -> None:
        try:
            self.request("DELETE", location).close()
        except RegistryError:
            pass  # best effort: the registry expires abandoned sessions anyway


# ---------------------------------------------------------------- helpers


def _read_capped(response: Response, limit: int, what: str) -> bytes:
    length = response.headers.get("Content-Length") or ""
    if length.isdigit() and int(length) > limit:
        raise ManifestError(f"{what} is {int(length)} bytes, over the {_mib(limit)} limit")
    data = response.read_all(limit)
    if len(data) > limit:
        raise ManifestError(f"{what} is over the {_mib(limit)} limit")
    return data


def _manifest_digest(
    data: bytes, reference: str, headers: Headers, media_type: str, what: str
) -> str:
    if is_digest(reference):
        actual = compute_digest(data, reference.split(":", 1)[0])
        if actual != reference:
            raise DigestMismatchError(f"{what}: content has digest {actual}")
        return reference
    digest = compute_digest(data)
    served = headers.get("Docker-Content-Digest")
    checkable = served and served.startswith("sha256:") and media_type not in SCHEMA1_TYPES
    if checkable and served != digest:
        raise DigestMismatchError(
            f"{what}: registry says {served} but the content has digest {digest}"
        )
    return digest


def _tags_from(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RegistryError("tag list is not JSON") from None
    tags = data.get("tags") if isinstance(data, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else None


# ---------------------------------------------------------------- blob reader


class BlobReader:
    """A blob being downloaded: `read(n)` streams verified bytes.

    Bytes are hashed as they pass; at the end the total size and digest must match
    (`DigestMismatchError` otherwise). A connection that drops or ends early is
    resumed from the current offset with `Range`; if the server answers the range
    request with the whole blob, the already-delivered prefix is skipped. At most
    `client.retries` resumptions, with the client's backoff.
    """

    def __init__(
        self, client: RegistryClient, repository: str, digest: str, size: int | None
    ) -> None:
        self.client = client
        self.repository = repository
        self.digest = digest
        self.size = size
        self.expected_size = size
        self.offset = 0
        self.resumes = 0
        self._hash = _hasher(digest)
        self._response: Response | None = None
        self._done = False
        self._path = f"/v2/{repository}/blobs/{digest}"
        self._where = f"blob {digest} in {client.registry}/{repository}"

    def start(self) -> None:
        response = self._get(0)
        length = response.headers.get("Content-Length") or ""
        if self.expected_size is None and length.isdigit():
            self.expected_size = int(length)
        self._response = response

    def _get(self, offset: int) -> Response:
        headers = Headers()
        if offset:
            headers.set("Range", f"bytes={offset}-")
        response = self.client.request(
            "GET", self._path, scopes=(pull_scope(self.repository),), headers=headers
        )
        if response.status == 206 and offset:
            _check_content_range(response, offset, self._where)
            return response
        if response.status == 200:
            if offset:
                self._skip(response, offset)
            return response
        raise self.client.error(response, f"reading {self._where}")

    def _skip(self, response: Response, count: int) -> None:
        while count:
            chunk = response.read(min(count, 1 << 16))
            if not chunk:
                raise TransportError(f"connection for {self._where} dropped", kind="reset")
            count -= len(chunk)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return self._read_all()
        while not self._done and n:
            chunk = self._read_some(n)
            if chunk is None:
                continue
            return chunk
        return b""

    def _read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = self.read(DEFAULT_CHUNK * 16)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def _read_some(self, n: int) -> bytes | None:
        """Some bytes; b'' at a verified end; None after a resumption."""
        assert self._response is not None
        try:
            chunk = self._response.read(n)
        except TransportError as exc:
            if exc.kind not in _RETRY_KINDS:
                raise
            self._resume(exc)
            return None
        if chunk:
            self._consume(chunk)
            return chunk
        if self.expected_size is not None and self.offset < self.expected_size:
            self._resume(None)
            return None
        self._finish()
        return b""

    def _consume(self, chunk: bytes) -> None:
        self.offset += len(chunk)
        self._hash.update(chunk)
        if self.expected_size is not None and self.offset > self.expected_size:
            self.close()
            raise DigestMismatchError(
                f"{self._where}: more than the expected {self.expected_size} bytes",
                hint="the registry serves content that does not match the manifest",
            )

    def _resume(self, cause: TransportError | None) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self.resumes >= self.client.retries:
            if cause is not None:
                raise cause
            raise TransportError(
                f"{self._where}: connection ended after {self.offset} of "
                f"{self.expected_size} bytes",
                kind="reset",
            )
        self.resumes += 1
        self.client.sleep_before_retry(self.resumes)
        self._response = self._get(self.offset)

    def _finish(self) -> None:
        self._done = True
        self.close()
        actual = f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
        if self.expected_size is not None and self.offset != self.expected_size:
            raise DigestMismatchError(
                f"{self._where}: got {self.offset} bytes, expected {self.expected_size}"
            )
        if actual != self.digest:
            raise DigestMismatchError(
                f"{self._where}: content has digest {actual}",
                hint="the download was corrupted or the registry is serving bad content",
            )

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_content_range(response: Response, offset: int, where: str) -> None:
    header = response.headers.get("Content-Range") or ""
    match = _CONTENT_RANGE_RE.match(header.strip())
    if match is None or int(match.group(1)) != offset:
        response.close()
        raise RegistryError(f"{where}: bad Content-Range {header!r} for a resume at {offset}")
