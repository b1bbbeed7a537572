"""rootless.image.push against an in-process fake registry: retries after a
dropped connection, chunked uploads, the manifest sent byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from rootless.image.push import PushOptions, push
from rootless.image.transport import Headers, Request, Response, TransportError
from rootless.store import Store
from rootless.store.ownership import Ownership


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Just enough of the distribution API; drops the first `drops` blob PUTs."""

    def __init__(self, drops: int = 0) -> None:
        self.drops = drops
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.sessions: dict[str, bytearray] = {}
        self.log: list[str] = []

    def _body(self, req: Request) -> bytes:
        if req.body is None:
            return b""
        return req.body if isinstance(req.body, bytes) else req.body.read()

    def send(self, req: Request) -> Response:
        path, _, query = req.url.split("://", 1)[1].partition("/")[2].partition("?")
        path = "/" + path
        self.log.append(f"{req.method} {path}")
        body = self._body(req)
        if req.method == "GET" and path == "/v2/":
            return self._resp(200)
        if req.method == "HEAD" and "/blobs/sha256:" in path:
            return self._resp(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if req.method == "POST" and path.endswith("/blobs/uploads/"):
            sid = f"s{len(self.sessions)}"
            self.sessions[sid] = bytearray()
            return self._resp(202, {"Location": f"{path}{sid}"})
        if req.method == "PATCH":
            self.sessions[path.rsplit("/", 1)[1]] += body
            return self._resp(202, {"Location": path})
        if req.method == "PUT" and "/blobs/uploads/" in path:
            if self.drops:
                self.drops -= 1
                raise TransportError("connection reset", kind="reset")
            data = bytes(self.sessions[path.rsplit("/", 1)[1]]) + body
            digest = query.split("digest=", 1)[1].replace("%3A", ":")
            assert sha(data) == digest
            self.blobs[digest] = data
            return self._resp(201)
        if req.method == "PUT" and "/manifests/" in path:
            self.manifests[path.rsplit("/", 1)[1]] = (body, req.headers.get("Content-Type") or "")
            return self._resp(201, {"Docker-Content-Digest": sha(body)})
        return self._resp(404)

    def _resp(self, status: int, headers: dict[str, str] | None = None) -> Response:
        return Response(status, "", Headers(headers or {}), "http://127.0.0.1:1/", io.BytesIO(b""))

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(str(tmp_path / "store"), ownership=Ownership("override"))
    layer = b"layer-bytes" * 20000
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(b"tar")]}}).encode()  # fmt: skip
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha(layer), "size": len(layer)}]}, indent=3).encode()  # fmt: skip
    for blob in (layer, config, manifest):
        s.blobs.put(blob)
    s.index.add(sha(manifest), "application/vnd.oci.image.manifest.v1+json", len(manifest),
                "127.0.0.1:1/test/app:1")  # fmt: skip
    return s


def test_retry_after_dropped_connection_and_manifest_bytes(store: Store) -> None:
    fake = FakeRegistry(drops=2)
    result = push(store, "127.0.0.1:1/test/app:1", options=PushOptions(transport=fake, retries=3))
    manifest = store.blobs.read(result.digest)
    assert fake.manifests["1"] == (manifest, "application/vnd.oci.image.manifest.v1+json")
    assert len(fake.blobs) == 2 and sorted(result.uploaded) == sorted(fake.blobs)
    # pushing again: every blob exists, nothing is uploaded
    again = push(store, "127.0.0.1:1/test/app:1", options=PushOptions(transport=fake))
    assert sorted(again.existing) == sorted(fake.blobs) and again.uploaded == []


def test_chunked_upload(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROOTLESS_PUSH_CHUNK_SIZE", "50000")
    fake = FakeRegistry()
    push(store, "127.0.0.1:1/test/app:1", "127.0.0.1:1/other/name:2", PushOptions(transport=fake, jobs=1))
    assert sum(1 for line in fake.log if line.startswith("PATCH")) == 5 + 1  # 220000-byte layer + config
    assert "2" in fake.manifests


def test_gives_up_after_retries(store: Store) -> None:
    fake = FakeRegistry(drops=10)
    with pytest.raises(TransportError, match="connection reset"):
        push(store, "127.0.0.1:1/test/app:1", options=PushOptions(transport=fake, retries=1, jobs=1))
