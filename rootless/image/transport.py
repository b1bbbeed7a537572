"""HTTP transport over the standard library (`http.client`), behind a small protocol.

`Transport.send(Request) -> Response` is the whole port (httpx's transport idea);
`HTTPTransport` is the real adapter and tests may plug any object with that method.

`HTTPTransport`:
- keeps idle connections per (scheme, host, port) and reuses them when a response
  was read to the end (HTTP/1.1 keep-alive);
- follows redirects (301/302/303/307/308) for GET and HEAD, at most 10, and drops the
  `Authorization` header when a redirect leaves the original scheme://host:port
  (registries redirect blob downloads to object storage with presigned URLs); a
  loop (a URL reached twice), a scheme other than http/https, and a verified
  https request sent on to plain http are refused (`kind="redirect"`);
- applies one timeout to connecting and to each socket read;
- honours `https_proxy`/`http_proxy`/`no_proxy` (CONNECT tunnel for HTTPS);
- verifies TLS certificates unless a request says `verify=False`.

Low-level failures (the stdlib's OSError family and http.client errors) are mapped at
this edge to `TransportError`, a `RegistryError` whose `kind` says what went wrong
("refused", "dns", "tls-verify", "tls", "timeout", "reset", "network", "protocol"),
both when sending and while reading a response body.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, Self

from rootless.errors import RegistryError
from rootless.image.insecure import is_loopback

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "rootless"
_IDLE_PER_HOST = 4

Body = bytes | BinaryIO | None


class TransportError(RegistryError):
    """A request failed below HTTP: no connection, TLS, timeout, dropped connection."""

    def __init__(self, message: str, *, kind: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


_TLS_HINT = (
    "if you trust this registry (e.g. a self-signed certificate), pass --tls-verify=false "
    "or add it to ROOTLESS_INSECURE_REGISTRIES"
)
_NET_HINT = "check the registry address, that it is running, and proxy settings"


def map_error(exc: BaseException, host: str, timeout: float | None = None) -> TransportError:
    """Translate a stdlib network/HTTP exception into a one-line TransportError."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return TransportError(
            f"TLS certificate of registry {host} could not be verified: {why}",
            kind="tls-verify",
            hint=_TLS_HINT,
        )
    if isinstance(exc, ssl.SSLError):
        why = exc.reason or str(exc)
        return TransportError(f"TLS handshake with registry {host} failed: {why}", kind="tls")
    if isinstance(exc, socket.gaierror):
        return TransportError(
            f"registry {host} unreachable: cannot resolve host name", kind="dns", hint=_NET_HINT
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(
            f"registry {host} unreachable: connection refused", kind="refused", hint=_NET_HINT
        )
    if isinstance(exc, TimeoutError):
        after = f" after {timeout:g}s" if timeout else ""
        return TransportError(f"registry {host} timed out{after}", kind="timeout")
    if isinstance(
        exc,
        (
            ConnectionResetError,
            BrokenPipeError,
            http.client.IncompleteRead,
            http.client.RemoteDisconnected,
        ),
    ):
        return TransportError(f"connection to registry {host} dropped", kind="reset")
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
        return TransportError(f"registry {host} unreachable: {why}", kind="network", hint=_NET_HINT)
    return TransportError(f"bad HTTP exchange with registry {host}: {exc}", kind="protocol")


def netloc(url: str) -> str:
    """host[:port] of a URL, for messages."""
    return urllib.parse.urlsplit(url).netloc


class Headers:
    """Case-insensitive, ordered header multimap (enough for registry traffic)."""

    def __init__(self, items: Mapping[str, str] | list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        pairs = items.items() if isinstance(items, Mapping) else (items or [])
        for key, value in pairs:
            self.add(key, value)

    def add(self, key: str, value: str) -> None:
        self._items.append((key, value))

    def set(self, key: str, value: str) -> None:
        self.remove(key)
        self.add(key, value)

    def remove(self, key: str) -> None:
        low = key.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def get(self, key: str, default: str | None = None) -> str | None:
        low = key.lower()
        for k, v in self._items:
            if k.lower() == low:
                return v
        return default

    def get_all(self, key: str) -> list[str]:
        low = key.lower()
        return [v for k, v in self._items if k.lower() == low]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self.items())


@dataclass
class Request:
    """One HTTP request. `body` may be bytes or a readable binary stream."""

    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: Body = None
    timeout: float = DEFAULT_TIMEOUT
    verify: bool = True
    follow_redirects: bool = True
    ca_certs: tuple[str, ...] = ()  # extra CA files trusted besides the system store


class Response:
    """A response whose body is read on demand.

    `read(n)` streams; `close()` releases the connection (returned to the pool only
    when the body was consumed completely). `url` is the final URL after redirects.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Headers,
        url: str,
        stream: BinaryIO | None = None,
        release: _Release | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.url = url
        self._stream = stream if stream is not None else io.BytesIO(b"")
        self._release = release
        self._closed = False
        self.timeout: float | None = None

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            return b""
        try:
            return self._stream.read(n) if n >= 0 else self._stream.read()
        except (OSError, http.client.HTTPException) as exc:
            raise map_error(exc, netloc(self.url), self.timeout) from exc

    def read_all(self, limit: int | None = None) -> bytes:
        """Read the whole body; with `limit`, stop after limit+1 bytes (caller checks)."""
        if limit is None:
            return self.read()
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = self.read(min(65536, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._release is not None:
            self._release()
        else:
            self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Release(Protocol):
    def __call__(self) -> None: ...


class Transport(Protocol):
    """The port: send one request, get a streaming response."""

    def send(self, request: Request) -> Response: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- URL helpers


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def _target(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _proxy_for(url: str) -> str | None:
    """The proxy for `url` from *_proxy variables; loopback never goes through one."""
    scheme, host, _port = origin(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if not proxy or is_loopback(host) or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else "http://" + proxy


# ---------------------------------------------------------------- connection pool

PoolKey = tuple[str, str, int, bool, str | None, tuple[str, ...]]


class _Pool:
    """Idle keep-alive connections, per (scheme, host, port, verify, proxy)."""

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, key: PoolKey) -> http.client.HTTPConnection | None:
        with self._lock:
            conns = self._idle.get(key)
            return conns.pop() if conns else None

    def give(self, key: PoolKey, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < _IDLE_PER_HOST:
                conns.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for group in self._idle.values() for c in group]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _ssl_context(verify: bool, ca_certs: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for cafile in ca_certs:
        ctx.load_verify_locations(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HTTPTransport:
    """`Transport` over `http.client` with keep-alive reuse and safe redirects."""

    def __init__(self, *, user_agent: str = USER_AGENT) -> None:
        self.user_agent = user_agent
        self._pool = _Pool()
        self._contexts: dict[tuple[bool, tuple[str, ...]], ssl.SSLContext] = {}

    def close(self) -> None:
        self._pool.close()

    def send(self, request: Request) -> Response:
        try:
            return self._send_following(request)
        except (OSError, http.client.HTTPException) as exc:
            raise map_error(exc, netloc(request.url), request.timeout) from exc

    def _send_following(self, request: Request) -> Response:
        response = self._send_once(request)
        first = request.url
        seen = {request.url}
        while request.follow_redirects and _should_follow(request, response):
            response.close()
            if len(seen) > MAX_REDIRECTS:
                raise _redirect_error(first, f"more than {MAX_REDIRECTS} redirects")
            request = _redirected(request, response)
            if request.url in seen:
                raise _redirect_error(first, f"redirect loop (back to {_shown(request.url)})")
            seen.add(request.url)
            response = self._send_once(request)
        return response

    def _context(self, verify: bool, ca_certs: tuple[str, ...]) -> ssl.SSLContext:
        key = (verify, ca_certs)
        if key not in self._contexts:
            self._contexts[key] = _ssl_context(verify, ca_certs)
        return self._contexts[key]

    def _connect(self, key: PoolKey, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port, verify, proxy, ca_certs = key
        ctx = self._context(verify, ca_certs) if scheme == "https" else None
        if proxy is None:
            return self._direct(scheme, host, port, ctx, timeout)
        _pscheme, phost, pport = origin(proxy)
        if ctx is not None:
            conn = http.client.HTTPSConnection(phost, pport, timeout=timeout, context=ctx)
            conn.set_tunnel(host, port)
            return conn
        return http.client.HTTPConnection(phost, pport, timeout=timeout)

    def _direct(
        self, scheme: str, host: str, port: int, ctx: ssl.SSLContext | None, timeout: float
    ) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        if scheme != "http":
            raise http.client.InvalidURL(f"unsupported URL scheme {scheme!r}")
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _send_once(self, request: Request) -> Response:
        scheme, host, port = origin(request.url)
        proxy = _proxy_for(request.url)
        key: PoolKey = (scheme, host, port, request.verify, proxy, request.ca_certs)
        conn = self._pool.take(key)
        replayable = request.body is None or isinstance(request.body, bytes)
        if conn is not None and not replayable:
            conn.close()  # a stream body cannot be re-sent if the idle connection is stale
            conn = None
        if conn is not None:
            try:
                return self._exchange(conn, key, request, reused=True)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()  # a stale keep-alive connection: retry on a fresh one
        conn = self._connect(key, request.timeout)
        return self._exchange(conn, key, request, reused=False)

    def _exchange(
        self, conn: http.client.HTTPConnection, key: PoolKey, request: Request, *, reused: bool
    ) -> Response:
        if reused and conn.sock is not None:
            conn.sock.settimeout(request.timeout)
        conn.timeout = request.timeout
        headers = request.headers.copy()
        if "User-Agent" not in headers:
            headers.set("User-Agent", self.user_agent)
        path = request.url if key[4] is not None and key[0] == "http" else _target(request.url)
        try:
            _write_request(conn, request, path, headers)
            raw = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return self._wrap(conn, key, request, raw)

    def _wrap(
        self,
        conn: http.client.HTTPConnection,
        key: PoolKey,
        request: Request,
        raw: http.client.HTTPResponse,
    ) -> Response:
        headers = Headers(list(raw.getheaders()))

        def release() -> None:
            if raw.isclosed() and not raw.will_close:
                self._pool.give(key, conn)
            else:
                raw.close()
                conn.close()

        stream = raw if request.method != "HEAD" else None
        if request.method == "HEAD":
            raw.read()
        response = Response(raw.status, raw.reason, headers, request.url, stream, release)
        response.timeout = request.timeout
        return response


def _write_request(
    conn: http.client.HTTPConnection, request: Request, path: str, headers: Headers
) -> None:
    body = request.body
    if isinstance(body, bytes):
        headers.set("Content-Length", str(len(body)))
    elif body is None and request.method in ("POST", "PUT", "PATCH"):
        headers.set("Content-Length", "0")
    conn.putrequest(request.method, path, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    if isinstance(body, bytes):
        if body:
            conn.send(body)
    elif body is not None:
        for chunk in _chunks(body):
            conn.send(chunk)


def _chunks(stream: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk


def _should_follow(request: Request, response: Response) -> bool:
    if response.status not in REDIRECT_CODES or not response.headers.get("Location"):
        return False
    return request.method in ("GET", "HEAD")


def _shown(url: str) -> str:
    """A URL for a message, without its query (presigned URLs carry secrets)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:200]


def _redirect_error(first: str, why: str) -> TransportError:
    return TransportError(f"fetching {_shown(first)}: {why}", kind="redirect")


def _redirected(request: Request, response: Response) -> Request:
    location = response.headers.get("Location") or ""
    url = urllib.parse.urljoin(request.url, location)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _redirect_error(request.url, f"redirect to an unsupported URL scheme {scheme!r}")
    if request.verify and origin(request.url)[0] == "https" and scheme == "http":
        raise _redirect_error(request.url, f"redirect from https to plain http ({_shown(url)})")
    headers = request.headers.copy()
    if origin(url) != origin(request.url):
        headers.remove("Authorization")
    return Request(
        method=request.method,
        url=url,
        headers=headers,
        body=None,
        timeout=request.timeout,
        verify=request.verify,
        follow_redirects=request.follow_redirects,
        ca_certs=request.ca_certs,
    )
