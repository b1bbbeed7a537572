"""Registry credentials and the token dance.

Credential sources, first match wins:

1. `$REGISTRY_AUTH_FILE` if set, else `$XDG_RUNTIME_DIR/containers/auth.json` (podman's
   file, written by `rootless login`), else `~/.config/containers/auth.json`;
2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (`auths`, with the
   base64 `auth` field or `username`/`password`, or `identitytoken`).

Keys may be `host[:port]`, `host/namespace[/repo]` (most specific wins) or URLs such
as `https://index.docker.io/v1/`; the Docker Hub aliases `docker.io`,
`index.docker.io` and `registry-1.docker.io` are one registry. Credential helpers
(`credsStore`/`credHelpers`) are not run.

Authentication follows the registry's `WWW-Authenticate` challenge: `Basic` sends the
credentials on each request; `Bearer` fetches a token from the realm with
`GET realm?service=...&scope=...` (basic credentials attached when known; anonymous
otherwise; an `identitytoken` is exchanged with an OAuth2 refresh-token POST) and
caches it per scope set until it expires.

Where credentials may go (`realm_gets_credentials`): the registry names its token
service, so a hostile or spoofed challenge could send the user's password anywhere.
Credentials go to a realm on the registry's own host name (any port), or to another
host over https with certificate verification (Docker Hub's auth.docker.io, gcr.io,
...). A realm on another host over plain http, or over https without verification
(an insecure registry), gets an anonymous token request instead, with a warning.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rootless import log
from rootless.errors import RegistryError
from rootless.image.transport import Headers, Request, Transport, origin

DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
TOKEN_MAX_BYTES = 1 << 20
DEFAULT_TOKEN_TTL = 60
CLIENT_ID = "rootless"


def _login_hint(registry: str) -> str:
    return f"run `rootless login {registry}` with valid credentials"


class AuthenticationError(RegistryError):
    """The registry (or its token service) rejected our credentials or anonymity."""


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


# ---------------------------------------------------------------- files


def auth_file_path(env: Mapping[str, str] | None = None) -> str:
    """Where `rootless login` stores credentials (podman's auth.json)."""
    env = os.environ if env is None else env
    explicit = env.get("REGISTRY_AUTH_FILE")
    if explicit:
        return explicit
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    return os.path.join(_home(env), ".config", "containers", "auth.json")


def docker_config_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG") or os.path.join(_home(env), ".docker")
    return os.path.join(base, "config.json")


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def normalize_key(key: str) -> str:
    """Canonical form of an `auths` key: no scheme, Docker Hub aliases folded."""
    key = key.strip()
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc  # docker style "https://host/v1/"
    host, sep, path = key.rstrip("/").partition("/")
    host = host.lower()
    if host in DOCKER_HUB_ALIASES:
        host = "docker.io"
    return host + sep + path


def _read_auths(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryError(
            f"cannot read credentials file {path}: {exc}", hint="fix or remove the file"
        ) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    return auths if isinstance(auths, dict) else {}


def _decode_entry(entry: object, path: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryError(f"credentials file {path}: bad base64 'auth' field") from None
        if sep:
            return Credentials(user, password, token if isinstance(token, str) else "")
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, token if isinstance(token, str) else "")
    if isinstance(token, str) and token:
        return Credentials(identity_token=token)
    return None


def _candidate_keys(registry: str, repository: str | None) -> list[str]:
    host = normalize_key(registry)
    keys = []
    if repository:
        parts = repository.split("/")
        keys = [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    return keys + [host]


def _lookup_in(path: str, keys: list[str]) -> Credentials | None:
    auths = {normalize_key(k): v for k, v in _read_auths(path).items()}
    for key in keys:
        if key in auths:
            creds = _decode_entry(auths[key], path)
            if creds is not None:
                return creds
    return None


@dataclass(frozen=True)
class CredentialStore:
    """Looks credentials up in the auth files, in order."""

    paths: tuple[str, ...]

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> CredentialStore:
        return cls((auth_file_path(env), docker_config_path(env)))

    def lookup(self, registry: str, repository: str | None = None) -> Credentials | None:
        """Credentials for `registry` (host[:port]) and optionally a repository path."""
        keys = _candidate_keys(registry, repository)
        for path in self.paths:
            creds = _lookup_in(path, keys)
            if creds is not None:
                return creds
        return None


def _write_private_json(path: str, data: object) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_whole(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_login(registry: str, username: str, password: str, path: str | None = None) -> str:
    """Save credentials for `registry` in auth.json (mode 0600); return the file path."""
    path = path or auth_file_path()
    data = _load_whole(path)
    auths = data.get("auths")
    auths = dict(auths) if isinstance(auths, dict) else {}
    key = normalize_key(registry)
    auths = {k: v for k, v in auths.items() if normalize_key(k) != key}
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    auths[key] = {"auth": token}
    data["auths"] = auths
    _write_private_json(path, data)
    return path


def remove_login(registry: str, path: str | None = None) -> bool:
    """Forget credentials for `registry`; True when something was removed."""
    path = path or auth_file_path()
    data = _load_whole(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    key = normalize_key(registry)
    kept = {k: v for k, v in auths.items() if normalize_key(k) != key}
    if len(kept) == len(auths):
        return False
    data["auths"] = kept
    _write_private_json(path, data)
    return True


# ---------------------------------------------------------------- challenges


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: scheme (lowercase) and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?=\s|$|,)")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a `WWW-Authenticate` value (possibly several challenges)."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME_RE.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM_RE.match(header, pos)
            if param is None:
                break
            params[param.group(1).lower()] = _unquote(param.group(2))
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """Prefer Bearer over Basic; ignore schemes we do not speak."""
    by_scheme = {c.scheme: c for c in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float


def _token_from_json(body: bytes, realm: str) -> _Token:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise RegistryError(f"token service {realm} returned no JSON")
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token service {realm} returned no token")
    ttl = data.get("expires_in")
    ttl = ttl if isinstance(ttl, int) and ttl > 0 else DEFAULT_TOKEN_TTL
    return _Token(token, time.monotonic() + max(ttl - 10, ttl / 2))


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("code") or "")
        for key in ("details", "error_description", "error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return ""


def realm_gets_credentials(realm: str, registry: str, verify: bool) -> bool:
    """Whether the user's credentials for `registry` may be sent to token `realm`:
    the same host name (any port), or verified https (see the module doc)."""
    scheme, host, _port = origin(realm)
    registry_host = (urllib.parse.urlsplit("//" + registry).hostname or "").lower()
    if host and host == registry_host:
        return True
    return scheme == "https" and verify


class Authenticator:
    """Produces `Authorization` values for one registry, following its challenge."""

    def __init__(
        self,
        transport: Transport,
        registry: str,
        credentials: Credentials | None,
        *,
        verify: bool = True,
        timeout: float = 30.0,
        ca_certs: tuple[str, ...] = (),
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.credentials = credentials
        self.verify = verify
        self.timeout = timeout
        self.ca_certs = ca_certs
        self.challenge: Challenge | None = None
        self.withheld_from = ""  # a token service denied our credentials (its origin)
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()

    def learn(self, header: str | None) -> bool:
        """Record the challenge from a `WWW-Authenticate` header; True if usable."""
        challenge = pick_challenge(parse_challenges(header or ""))
        if challenge is not None:
            self.challenge = challenge
        return challenge is not None

    def forget(self, scopes: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(tuple(sorted(scopes)), None)

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The `Authorization` header value for a request needing `scopes`."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials
            return creds.basic() if creds is not None and creds.username else None
        key = tuple(sorted(scopes))
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires <= time.monotonic():
                token = self._fetch_token(challenge, key)
                self._tokens[key] = token
        return f"Bearer {token.value}"

    def _has_password(self) -> bool:
        return self.credentials is not None and bool(self.credentials.username)

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(
                f"registry {self.registry} sent a bearer challenge without a usable realm"
            )
        service = challenge.params.get("service", "")
        send = self._credentials_for(realm)
        if send and self.credentials is not None and self.credentials.identity_token:
            request = self._refresh_request(realm, service, scopes)
        else:
            request = self._token_request(realm, service, scopes, send)
        with self.transport.send(request) as response:
            body = response.read_all(TOKEN_MAX_BYTES)
            status = response.status
        if status in (401, 403):
            raise self.failure(_error_text(body))
        if status != 200:
            raise RegistryError(
                f"token service {realm} answered HTTP {status}: {_error_text(body)}".rstrip(": ")
            )
        return _token_from_json(body, realm)

    def _credentials_for(self, realm: str) -> bool:
        """Whether to send our credentials to `realm`; warns (once) when withheld."""
        if self.credentials is None:
            return False
        if realm_gets_credentials(realm, self.registry, self.verify):
            return True
        scheme, host, port = origin(realm)
        where = f"{scheme}://{host}:{port}"
        if self.withheld_from != where:
            self.withheld_from = where
            why = "plain http" if scheme == "http" else "https without certificate verification"
            log.warning(
                f"not sending your credentials for {self.registry} to its token service "
                f"{where}: another host, over {why}; asking for an anonymous token"
            )
        return False

    def _token_request(
        self, realm: str, service: str, scopes: tuple[str, ...], send_credentials: bool = True
    ) -> Request:
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        query += [("scope", s) for s in scopes]
        headers = Headers()
        if send_credentials and self._has_password() and self.credentials is not None:
            query.append(("account", self.credentials.username))
            headers.set("Authorization", self.credentials.basic())
        sep = "&" if "?" in realm else "?"
        url = realm + (sep + urllib.parse.urlencode(query) if query else "")
        return Request(
            "GET", url, headers, timeout=self.timeout, verify=self.verify, ca_certs=self.ca_certs
        )

    def _refresh_request(self, realm: str, service: str, scopes: tuple[str, ...]) -> Request:
        assert self.credentials is not None
        form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.credentials.identity_token),
            ("service", service),
            ("client_id", CLIENT_ID),
            ("scope", " ".join(scopes)),
        ]
        headers = Headers({"Content-Type": "application/x-www-form-urlencoded"})
        body = urllib.parse.urlencode(form).encode()
        return Request(
            "POST", realm, headers, body, self.timeout, self.verify, ca_certs=self.ca_certs
        )

    def failure(self, detail: str = "") -> AuthenticationError:
        """The error for a refused request, worded by whether we sent credentials."""
        suffix = f": {detail}" if detail else ""
        if self.withheld_from:
            return AuthenticationError(
                f"authentication required by registry {self.registry}{suffix}",
                hint=f"your credentials were not sent to its token service {self.withheld_from} "
                "(another host without verified https); see docs/registry.md",
            )
        if self.credentials is None:
            return AuthenticationError(
                f"authentication required by registry {self.registry}{suffix}",
                hint=_login_hint(self.registry),
            )
        return AuthenticationError(
            f"authentication to registry {self.registry} failed{suffix}",
            hint=_login_hint(self.registry),
        )
