"""Fixtures for the registry client tests.

- `plain_registry`, `basic_registry`, `token_registry`: real Debian `docker-registry`
  processes on 127.0.0.1 (no auth; htpasswd basic auth; bearer tokens from an
  in-test token server whose JWTs are signed with `openssl`), one per session.
- `images`: tiny OCI images built here in Python (OCI layout with gzip, zstd and a
  two-platform index) and pushed with `skopeo copy` into the plain registry (OCI and
  Docker v2s2 formats) and the authenticated ones.
- `fake_registry`: an in-process HTTP server for fault injection.

Needs: docker-registry, skopeo, htpasswd (apache2-utils), openssl. Optional: zstandard.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rootless.image import types as t

REQUIRED_TOOLS = ("docker-registry", "skopeo", "htpasswd", "openssl")
USER, PASSWORD = "alice", "wonderland"
TOKEN_USER, TOKEN_PASSWORD = "tokuser", "tokpass"
SERVICE = "test-registry"
ISSUER = "test-issuer"


def _missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("ROOTLESS_MUST_WORK") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    missing = _missing_tools()
    if missing:
        _skip_or_fail(f"registry tests need {', '.join(missing)}")


@dataclass(frozen=True)
class Accounts:
    user: str = USER
    password: str = PASSWORD
    token_user: str = TOKEN_USER
    token_password: str = TOKEN_PASSWORD


@pytest.fixture(scope="session")
def accounts() -> Accounts:
    """The users the authenticated registries know (test modules must not import conftest)."""
    return Accounts()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- docker-registry


@dataclass
class RegistryProcess:
    host: str  # 127.0.0.1:PORT
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _config(root: Path, port: int, auth: dict[str, Any] | None) -> Path:
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if auth:
        cfg["auth"] = auth
    path = root / "config.yml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _wait_ready(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401 is an answer
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"docker-registry on {host} did not answer: {log.read_text()[-2000:]}")


def start_registry(root: Path, auth: dict[str, Any] | None = None) -> RegistryProcess:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _config(root, port, auth)
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    host = f"127.0.0.1:{port}"
    try:
        _wait_ready(host, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return RegistryProcess(host, root, proc, log)


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def plain_registry(work: Path) -> Iterator[RegistryProcess]:
    reg = start_registry(work / "plain")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(work: Path) -> Iterator[RegistryProcess]:
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True
    ).stdout
    root = work / "basic"
    root.mkdir()
    (root / "htpasswd").write_bytes(htpasswd)
    auth = {"htpasswd": {"realm": "basic-realm", "path": str(root / "htpasswd")}}
    reg = start_registry(root, auth)
    yield reg
    reg.stop()


# ---------------------------------------------------------------- token server


class TokenServer:
    """A docker token service: GET /token?service&scope -> signed JWT.

    Anonymous callers get pull access to `public/*`; `tokuser` gets what it asks
    for; wrong credentials get 401. Records each request's Authorization header.
    """

    def __init__(self, root: Path) -> None:
        self.key = root / "key.pem"
        self.cert = root / "cert.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=token-signer",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.seen: list[dict[str, str | None]] = []
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            if user is None:
                wanted = [a for a in wanted if a == "pull" and name.startswith("public/")]
            if wanted:
                access.append({"type": kind, "name": name, "actions": wanted})
        return access

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                header = self.headers.get("Authorization")
                server.seen.append({"authorization": header, "path": self.path})
                user = None
                if header:
                    raw = base64.b64decode(header.split(" ", 1)[1]).decode()
                    if raw != f"{TOKEN_USER}:{TOKEN_PASSWORD}":
                        self._reply(401, {"details": "incorrect username or password"})
                        return
                    user = TOKEN_USER
                now = int(time.time())
                claims = {
                    "iss": ISSUER,
                    "sub": user or "",
                    "aud": query.get("service", [""])[0],
                    "exp": now + 300,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": secrets.token_hex(8),
                    "access": server.grant(user, query.get("scope", [])),
                }
                self._reply(200, {"token": server.sign(claims), "expires_in": 300})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def token_server(work: Path) -> Iterator[TokenServer]:
    root = work / "token"
    root.mkdir()
    server = TokenServer(root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def token_registry(work: Path, token_server: TokenServer) -> Iterator[RegistryProcess]:
    auth = {
        "token": {
            "realm": token_server.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(token_server.cert),
        }
    }
    reg = start_registry(work / "tokenreg", auth)
    yield reg
    reg.stop()


# ---------------------------------------------------------------- OCI layout builder


def make_layer(files: dict[str, bytes], compression: str = "gzip") -> tuple[bytes, str, str]:
    """(blob, media type, diff_id) for a layer holding `files`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o755, 1700000000
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(tar_bytes), t.OCI_LAYER_ZSTD, sha256(tar_bytes)
    return gzip.compress(tar_bytes, mtime=0), t.OCI_LAYER_GZIP, sha256(tar_bytes)


@dataclass
class BuiltImage:
    manifest: bytes
    config: bytes
    layers: list[bytes]
    platform: t.Platform

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


@dataclass
class OCILayout:
    path: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def image(
        self, platform: t.Platform, files: dict[str, bytes], compression: str = "gzip"
    ) -> BuiltImage:
        blob, media_type, diff_id = make_layer(files, compression)
        config = {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Cmd": ["/hello"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        if platform.variant:
            config["variant"] = platform.variant
        config_bytes = json.dumps(config).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": t.OCI_MANIFEST,
            "config": {
                "mediaType": t.OCI_CONFIG,
                "digest": self.put(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [{"mediaType": media_type, "digest": self.put(blob), "size": len(blob)}],
        }
        manifest_bytes = json.dumps(manifest).encode()
        self.put(manifest_bytes)
        return BuiltImage(manifest_bytes, config_bytes, [blob], platform)

    def tag(self, name: str, media_type: str, data: bytes) -> None:
        self.refs.append(
            {
                "mediaType": media_type,
                "digest": sha256(data),
                "size": len(data),
                "annotations": {"org.opencontainers.image.ref.name": name},
            }
        )
        index = {"schemaVersion": 2, "mediaType": t.OCI_INDEX, "manifests": self.refs}
        (self.path / "index.json").write_text(json.dumps(index))

    def index(self, images: list[BuiltImage]) -> bytes:
        entries = []
        for img in images:
            platform = {"os": img.platform.os, "architecture": img.platform.architecture}
            if img.platform.variant:
                platform["variant"] = img.platform.variant
            entries.append(
                {
                    "mediaType": t.OCI_MANIFEST,
                    "digest": img.digest,
                    "size": len(img.manifest),
                    "platform": platform,
                }
            )
        data = json.dumps(
            {"schemaVersion": 2, "mediaType": t.OCI_INDEX, "manifests": entries}
        ).encode()
        self.put(data)
        return data


def skopeo_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(home), XDG_RUNTIME_DIR=str(home), REGISTRY_AUTH_FILE=str(home / "auth.json")
    )
    env.pop("DOCKER_CONFIG", None)
    return env


def skopeo(home: Path, *args: str) -> str:
    proc = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        check=False,
        env=skopeo_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@dataclass
class Images:
    """What the session pushed, for assertions."""

    simple: BuiltImage  # plain: test/simple:v1 (OCI), test/docker:v1 (v2s2)
    amd64: BuiltImage  # plain: test/multi:v1 index
    arm64: BuiltImage
    index: bytes
    zstd: BuiltImage | None  # plain: test/zstd:v1
    docker_digest: str  # manifest digest of test/docker:v1 after v2s2 conversion
    home: Path  # a HOME for skopeo

    def push(self, layout: Path, tag: str, dest: str, *extra: str) -> None:
        skopeo(
            self.home,
            "copy",
            "-q",
            "--dest-tls-verify=false",
            *extra,
            f"oci:{layout}:{tag}",
            f"docker://{dest}",
        )


@pytest.fixture(scope="session")
def images(work: Path, plain_registry: RegistryProcess) -> Images:
    home = work / "skopeo-home"
    home.mkdir()
    layout = OCILayout(work / "layout")
    simple = layout.image(t.Platform("linux", "amd64"), {"hello": b"#!/bin/sh\necho hi\n"})
    layout.tag("simple", t.OCI_MANIFEST, simple.manifest)
    amd64 = layout.image(t.Platform("linux", "amd64"), {"arch": b"amd64\n"})
    arm64 = layout.image(t.Platform("linux", "arm64", "v8"), {"arch": b"arm64\n"})
    index = layout.index([amd64, arm64])
    layout.tag("multi", t.OCI_INDEX, index)
    zstd = None
    try:
        import zstandard  # noqa: F401

        zstd = layout.image(t.Platform("linux", "amd64"), {"z": b"zstd layer\n" * 100}, "zstd")
        layout.tag("zstd", t.OCI_MANIFEST, zstd.manifest)
    except ImportError:
        pass
    result = Images(simple, amd64, arm64, index, zstd, "", home)
    reg = plain_registry.host
    result.push(layout.path, "simple", f"{reg}/test/simple:v1", "--preserve-digests")
    result.push(layout.path, "simple", f"{reg}/test/docker:v1", "--format", "v2s2")
    result.push(layout.path, "multi", f"{reg}/test/multi:v1", "--all", "--preserve-digests")
    if zstd is not None:
        result.push(layout.path, "zstd", f"{reg}/test/zstd:v1", "--preserve-digests")
    inspected = json.loads(
        skopeo(home, "inspect", "--tls-verify=false", f"docker://{reg}/test/docker:v1")
    )
    result.docker_digest = inspected["Digest"]
    return result


@pytest.fixture(scope="session")
def layout_path(work: Path, images: Images) -> Path:
    return work / "layout"


# ---------------------------------------------------------------- environment isolation


@pytest.fixture()
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME with no credentials and no config; returns it."""
    home = tmp_path / "home"
    home.mkdir()
    for var in (
        "DOCKER_CONFIG",
        "REGISTRY_AUTH_FILE",
        "XDG_CONFIG_HOME",
        "ROOTLESS_INSECURE_REGISTRIES",
        "https_proxy",
        "http_proxy",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    return home


# ---------------------------------------------------------------- in-process fake


Handler = Callable[["FakeRequest"], None]


class FakeRequest(http.server.BaseHTTPRequestHandler):
    """Request handler whose behaviour comes from the owning FakeServer's routes."""

    protocol_version = "HTTP/1.1"
    server: FakeHTTPServer

    def log_message(self, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.owner.log.append(
            {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "range": self.headers.get("Range"),
                "accept": self.headers.get("Accept"),
                "peer": str(self.client_address[1]),
            }
        )
        path = urllib.parse.urlsplit(self.path).path
        for prefix, handler in self.server.owner.routes:
            if path.startswith(prefix):
                handler(self)
                return
        self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"nope"}]}')

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def drop_after(self, status: int, body: bytes, cut: int, headers: dict[str, str]) -> None:
        """Announce the whole body, send `cut` bytes, then drop the connection."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


class FakeHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on purpose (timeouts, drops) are expected here


class FakeServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, Handler]] = []
        self.log: list[dict[str, str | None]] = []
        self.server = FakeHTTPServer(("127.0.0.1", 0), FakeRequest)
        self.server.owner = self
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def route(self, prefix: str, handler: Handler) -> None:
        self.routes.insert(0, (prefix, handler))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_registry() -> Iterator[FakeServer]:
    server = FakeServer()
    server.route("/v2/", lambda req: req.reply(200, b"{}"))
    yield server
    server.close()


@pytest.fixture()
def fake_blob_host() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()
