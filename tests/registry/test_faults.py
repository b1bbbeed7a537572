"""Fault injection with an in-process fake registry (http.server on 127.0.0.1)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import DigestMismatchError, ManifestError, RegistryError
from rootless.image import types as t
from rootless.image.auth import Credentials
from rootless.image.registry import RegistryClient
from rootless.image.transport import TransportError

BLOB = bytes(range(256)) * 400  # 102400 bytes
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BLOB_PATH = f"/v2/r/blobs/{BLOB_DIGEST}"


def client_for(server: Any, **kwargs: Any) -> RegistryClient:
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0)
    kwargs.setdefault("credentials", None)
    return RegistryClient(server.host, **kwargs)


def parse_range(header: str | None) -> int:
    return int(header.split("=")[1].rstrip("-")) if header else 0


# ---------------------------------------------------------------- blobs


def test_bad_digest(fake_registry: Any, clean_env: Path) -> None:
    corrupted = b"X" + BLOB[1:]
    fake_registry.route(BLOB_PATH, lambda req: req.reply(200, corrupted))
    with (
        client_for(fake_registry) as c,
        pytest.raises(DigestMismatchError) as info,
        c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader,
    ):
        reader.read()
    assert info.value.message.startswith(f"blob {BLOB_DIGEST} in {fake_registry.host}/r")
    assert "content has digest sha256:" in info.value.message


def test_longer_than_descriptor(fake_registry: Any, clean_env: Path) -> None:
    fake_registry.route(BLOB_PATH, lambda req: req.reply(200, BLOB + b"extra"))
    with (
        client_for(fake_registry) as c,
        pytest.raises(DigestMismatchError, match="more than"),
        c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader,
    ):
        reader.read()


def test_truncated_blob_resumes_with_range(fake_registry: Any, clean_env: Path) -> None:
    calls = []

    def handler(req: Any) -> None:
        start = parse_range(req.headers.get("Range"))
        calls.append(start)
        if len(calls) == 1:
            req.drop_after(200, BLOB, 30000, {})
        else:
            body = BLOB[start:]
            req.reply(206, body, {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})

    fake_registry.route(BLOB_PATH, handler)
    with client_for(fake_registry) as c, c.open_blob("r", BLOB_DIGEST) as reader:
        data = reader.read()  # the size comes from Content-Length
    assert data == BLOB
    assert calls == [0, 30000]
    assert reader.resumes == 1


def test_truncated_blob_server_ignores_range(fake_registry: Any, clean_env: Path) -> None:
    calls = []

    def handler(req: Any) -> None:
        calls.append(req.headers.get("Range"))
        if len(calls) == 1:
            req.drop_after(200, BLOB, 50000, {})
        else:
            req.reply(200, BLOB)  # whole blob again

    fake_registry.route(BLOB_PATH, handler)
    with client_for(fake_registry) as c, c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader:
        chunks = []
        while chunk := reader.read(4096):
            chunks.append(chunk)
    assert b"".join(chunks) == BLOB
    assert calls == [None, "bytes=50000-"]


def test_truncated_every_time_gives_up(fake_registry: Any, clean_env: Path) -> None:
    fake_registry.route(BLOB_PATH, lambda req: req.drop_after(200, BLOB, 1000, {}))
    with (
        client_for(fake_registry, retries=2) as c,
        pytest.raises(RegistryError) as info,
        c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader,
    ):
        reader.read()
    assert "dropped" in info.value.message or "ended after" in info.value.message
    assert len([e for e in fake_registry.log if e["path"] == BLOB_PATH]) == 3


def test_bad_content_range_on_resume(fake_registry: Any, clean_env: Path) -> None:
    calls = []

    def handler(req: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            req.drop_after(200, BLOB, 100, {})
        else:
            req.reply(206, BLOB, {"Content-Range": f"bytes 0-{len(BLOB) - 1}/{len(BLOB)}"})

    fake_registry.route(BLOB_PATH, handler)
    with (
        client_for(fake_registry) as c,
        pytest.raises(RegistryError, match="bad Content-Range"),
        c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader,
    ):
        reader.read()


def test_slow_server_times_out(fake_registry: Any, clean_env: Path) -> None:
    release = threading.Event()

    def slow(req: Any) -> None:
        release.wait(5)
        req.reply(200, b"{}")

    fake_registry.route("/v2/r/manifests/", slow)
    started = time.monotonic()
    try:
        with client_for(fake_registry, timeout=0.3, retries=1) as c:
            c.ping()
            with pytest.raises(RegistryError) as info:
                c.get_manifest("r", "v1")
    finally:
        release.set()
    assert info.value.message == f"registry {fake_registry.host} timed out after 0.3s"
    assert isinstance(info.value, TransportError) and info.value.kind == "timeout"
    assert time.monotonic() - started < 3


def test_redirect_to_other_host_drops_authorization(
    fake_registry: Any, fake_blob_host: Any, clean_env: Path
) -> None:
    expected = "Basic " + base64.b64encode(b"u:p").decode()

    def needs_auth(req: Any) -> bool:
        if req.headers.get("Authorization") != expected:
            req.reply(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                {"WWW-Authenticate": 'Basic realm="fake"'},
            )
            return False
        return True

    fake_registry.route("/v2/", lambda req: needs_auth(req) and req.reply(200, b"{}"))
    location = f"http://localhost:{fake_blob_host.host.split(':')[1]}/bucket/blob?sig=1"
    fake_registry.route(
        BLOB_PATH, lambda req: needs_auth(req) and req.reply(307, b"", {"Location": location})
    )
    fake_blob_host.route("/bucket/", lambda req: req.reply(200, BLOB))
    with (
        client_for(fake_registry, credentials=Credentials("u", "p")) as c,
        c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader,
    ):
        assert reader.read() == BLOB
    registry_hits = [e for e in fake_registry.log if e["path"] == BLOB_PATH]
    assert registry_hits and registry_hits[-1]["authorization"] == expected
    assert fake_blob_host.log == [
        {**fake_blob_host.log[0], "path": "/bucket/blob?sig=1", "authorization": None}
    ]


def test_connections_are_reused(fake_registry: Any, clean_env: Path) -> None:
    fake_registry.route(BLOB_PATH, lambda req: req.reply(200, BLOB))
    with client_for(fake_registry) as c:
        for _ in range(5):
            with c.open_blob("r", BLOB_DIGEST, len(BLOB)) as reader:
                reader.read()
    peers = {e["peer"] for e in fake_registry.log}
    assert len(fake_registry.log) == 6 and len(peers) == 1


# ---------------------------------------------------------------- manifests


def manifest_bytes() -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": t.OCI_MANIFEST,
            "config": {"mediaType": t.OCI_CONFIG, "digest": BLOB_DIGEST, "size": len(BLOB)},
            "layers": [],
        }
    ).encode()


def test_accept_header_lists_all_manifest_types(fake_registry: Any, clean_env: Path) -> None:
    data = manifest_bytes()
    fake_registry.route(
        "/v2/r/manifests/", lambda req: req.reply(200, data, {"Content-Type": t.OCI_MANIFEST})
    )
    with client_for(fake_registry) as c:
        fetched = c.get_manifest("r", "v1")
    assert fetched.media_type == t.OCI_MANIFEST
    accept = str(fake_registry.log[-1]["accept"])
    assert accept.split(", ") == [
        t.OCI_INDEX,
        t.DOCKER_MANIFEST_LIST,
        t.OCI_MANIFEST,
        t.DOCKER_MANIFEST,
    ]


def test_oversized_manifest(fake_registry: Any, clean_env: Path) -> None:
    big = b" " * ((4 << 20) + 1)
    fake_registry.route(
        "/v2/r/manifests/", lambda req: req.reply(200, big, {"Content-Type": t.OCI_MANIFEST})
    )
    with client_for(fake_registry) as c, pytest.raises(ManifestError) as info:
        c.get_manifest("r", "v1")
    assert info.value.message == (
        f"manifest v1 in {fake_registry.host}/r is 4194305 bytes, over the 4 MiB limit"
    )


def test_oversized_manifest_without_length(fake_registry: Any, clean_env: Path) -> None:
    def stream(req: Any) -> None:
        req.send_response(200)
        req.send_header("Content-Type", t.OCI_MANIFEST)
        req.send_header("Connection", "close")
        req.end_headers()
        for _ in range(5):
            req.wfile.write(b" " * (1 << 20))
        req.close_connection = True

    fake_registry.route("/v2/r/manifests/", stream)
    with client_for(fake_registry) as c, pytest.raises(ManifestError, match="over the 4 MiB"):
        c.get_manifest("r", "v1")


def test_oversized_config(fake_registry: Any, clean_env: Path) -> None:
    with client_for(fake_registry) as c, pytest.raises(ManifestError, match="over the 8 MiB"):
        c.fetch_blob("r", BLOB_DIGEST, 9 << 20)


def test_manifest_digest_checks(fake_registry: Any, clean_env: Path) -> None:
    data = manifest_bytes()
    wrong = "sha256:" + "f" * 64
    fake_registry.route(
        "/v2/r/manifests/",
        lambda req: req.reply(
            200, data, {"Content-Type": t.OCI_MANIFEST, "Docker-Content-Digest": wrong}
        ),
    )
    with client_for(fake_registry) as c:
        with pytest.raises(DigestMismatchError, match=f"registry says {wrong}"):
            c.get_manifest("r", "v1")
        with pytest.raises(DigestMismatchError, match="content has digest"):
            c.get_manifest("r", wrong)


def test_schema1_is_refused(fake_registry: Any, clean_env: Path) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "r", "tag": "v1", "fsLayers": []}).encode()
    fake_registry.route(
        "/v2/r/manifests/",
        lambda req: req.reply(200, body, {"Content-Type": t.DOCKER_SCHEMA1_SIGNED}),
    )
    with client_for(fake_registry) as c, pytest.raises(ManifestError, match="schema 1"):
        c.get_manifest("r", "v1").parse("r:v1")


# ---------------------------------------------------------------- status codes


def test_5xx_is_retried(fake_registry: Any, clean_env: Path) -> None:
    data = manifest_bytes()
    calls = []

    def flaky(req: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            req.reply(503, b"busy")
        else:
            req.reply(200, data, {"Content-Type": t.OCI_MANIFEST})

    fake_registry.route("/v2/r/manifests/", flaky)
    with client_for(fake_registry, retries=2) as c:
        assert c.get_manifest("r", "v1").data == data
    calls.clear()
    fake_registry.route("/v2/r/manifests/", lambda req: req.reply(502, b"bad gateway"))
    with client_for(fake_registry, retries=1) as c, pytest.raises(RegistryError) as info:
        c.get_manifest("r", "v1")
    assert info.value.message == (f"reading manifest v1 in {fake_registry.host}/r: bad gateway")


def test_429_hint(fake_registry: Any, clean_env: Path) -> None:
    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'
    fake_registry.route("/v2/r/manifests/", lambda req: req.reply(429, body))
    with client_for(fake_registry, retries=0) as c, pytest.raises(RegistryError) as info:
        c.get_manifest("r", "v1")
    assert "too many requests: toomanyrequests: You have reached your pull rate limit." in (
        info.value.message
    )
    assert "rate limit" in str(info.value.hint)


def test_several_registry_errors_joined(fake_registry: Any, clean_env: Path) -> None:
    body = json.dumps(
        {
            "errors": [
                {"code": "DENIED", "message": "requested access to the resource is denied"},
                {"code": "NAME_UNKNOWN", "message": "repository name not known to registry"},
            ]
        }
    ).encode()
    fake_registry.route("/v2/r/manifests/", lambda req: req.reply(404, body))
    with client_for(fake_registry, retries=0) as c, pytest.raises(RegistryError) as info:
        c.get_manifest("r", "v1")
    assert info.value.message.endswith(
        "denied: requested access to the resource is denied; "
        "name unknown: repository name not known to registry"
    )


def test_not_a_registry(fake_registry: Any, clean_env: Path) -> None:
    fake_registry.route("/v2/", lambda req: req.reply(404, b"not here"))
    with client_for(fake_registry) as c, pytest.raises(RegistryError, match="does not serve"):
        c.ping()


# ---------------------------------------------------------------- TLS


@pytest.fixture()
def tls_registry(tmp_path: Path) -> Iterator[str]:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_tls_verify_failure_message(tls_registry: str, clean_env: Path) -> None:
    with (
        RegistryClient(tls_registry, tls_verify=True, retries=0, credentials=None) as c,
        pytest.raises(RegistryError) as info,
    ):
        c.ping()
    assert info.value.message.startswith(f"TLS certificate of registry {tls_registry} could not")
    assert "--tls-verify=false" in str(info.value.hint)


def test_insecure_registry_uses_unverified_https(tls_registry: str, clean_env: Path) -> None:
    with RegistryClient(tls_registry, retries=0, credentials=None) as c:  # loopback: insecure
        c.ping()
        assert c.base_url == f"https://{tls_registry}"
