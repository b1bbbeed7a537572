"""A hostile registry (the in-process fake from conftest.py): redirect loops,
nested and self-referencing indexes, malformed manifests and configs, unknown
media types, decompression bombs, and token realms on other hosts.

Library calls must raise the project's error types with one-line messages; the
CLI must print one line and exit 125; the store must stay usable (a good image
pulls afterwards).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import (
    DigestMismatchError,
    ImageError,
    InvalidReferenceError,
    ManifestError,
    RegistryError,
)
from rootless.image import types as t
from rootless.image.auth import Authenticator, Credentials, realm_gets_credentials
from rootless.image.limits import LimitExceededError
from rootless.image.pull import pull
from rootless.image.registry import RegistryClient
from rootless.image.transport import HTTPTransport, TransportError
from rootless.store import Store

BLOB = b"hostile registry blob\n" * 100


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_for(server: Any, **kwargs: Any) -> RegistryClient:
    kwargs.setdefault("retries", 1)
    kwargs.setdefault("backoff", 0)
    kwargs.setdefault("credentials", None)
    return RegistryClient(server.host, **kwargs)


def one_line(message: str) -> str:
    assert "\n" not in message and "\r" not in message, repr(message)
    return message


def tar_of(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


class FakeRepo:
    """Manifests and blobs of one repository served by the fake registry."""

    def __init__(self, server: Any, repo: str = "r") -> None:
        self.server = server
        self.repo = repo
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        server.route(f"/v2/{repo}/blobs/", self._blob)
        server.route(f"/v2/{repo}/manifests/", self._manifest)

    def ref(self, tag: str) -> str:
        return f"{self.server.host}/{self.repo}:{tag}"

    def _blob(self, req: Any) -> None:
        digest = req.path.split("?")[0].rsplit("/", 1)[1]
        data = self.blobs.get(digest)
        if data is None:
            req.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        else:
            req.reply(200, data)

    def _manifest(self, req: Any) -> None:
        ref = req.path.split("?")[0].rsplit("/", 1)[1]
        found = self.manifests.get(ref)
        if found is None:
            req.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
        else:
            req.reply(200, found[0], {"Content-Type": found[1]})

    def put_blob(self, data: bytes) -> str:
        digest = sha(data)
        self.blobs[digest] = data
        return digest

    def put_manifest(self, tag: str, data: bytes, media_type: str = t.OCI_MANIFEST) -> str:
        self.manifests[tag] = (data, media_type)
        self.manifests[sha(data)] = (data, media_type)
        return sha(data)

    def config(self, diff_ids: list[str], **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config.update(extra)
        return config

    def image(
        self,
        tag: str,
        layers: list[bytes],
        *,
        config: dict[str, Any] | bytes | None = None,
        layer_media_type: str = t.OCI_LAYER_GZIP,
        manifest: dict[str, Any] | None = None,
    ) -> str:
        """Serve an image of gzip'd `layers` (plain tars) under `tag`; the overrides
        replace the config or manifest documents wholesale."""
        blobs = [gzip.compress(layer, mtime=0) for layer in layers]
        descs = [
            {"mediaType": layer_media_type, "digest": self.put_blob(b), "size": len(b)}
            for b in blobs
        ]
        if config is None:
            config = self.config([sha(layer) for layer in layers])
        config_bytes = config if isinstance(config, bytes) else json.dumps(config).encode()
        doc = manifest or {
            "schemaVersion": 2,
            "mediaType": t.OCI_MANIFEST,
            "config": {
                "mediaType": t.OCI_CONFIG,
                "digest": self.put_blob(config_bytes),
                "size": len(config_bytes),
            },
            "layers": descs,
        }
        return self.put_manifest(tag, json.dumps(doc).encode())


@pytest.fixture()
def repo(fake_registry: Any) -> FakeRepo:
    return FakeRepo(fake_registry)


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store.open(str(tmp_path / "store"))


def pull_fails(store: Store, ref: str, error: type[BaseException] = ImageError) -> str:
    with pytest.raises(error) as info:
        pull(store, ref)
    return one_line(str(info.value))


def good_image_still_pulls(store: Store, repo: FakeRepo) -> None:
    repo.image("good", [tar_of({"hello": b"hi\n"})])
    result = pull(store, repo.ref("good"))
    assert result.name and result.name.endswith("/r:good")
    names = [n for image in store.images() for n in image.names]
    assert names == [result.name], names
    layers = os.listdir(os.path.join(store.root, "layers"))
    assert len([n for n in layers if len(n) == 64]) == 1, layers


# ---------------------------------------------------------------- redirects


def test_blob_redirecting_to_itself(fake_registry: Any, clean_env: Path) -> None:
    path = f"/v2/r/blobs/{sha(BLOB)}"
    fake_registry.route(path, lambda req: req.reply(307, b"", {"Location": path}))
    with client_for(fake_registry) as c, pytest.raises(TransportError) as info:
        c.open_blob("r", sha(BLOB), len(BLOB))
    assert info.value.kind == "redirect"
    assert "redirect loop" in one_line(info.value.message)
    hits = [e for e in fake_registry.log if e["path"] == path]
    assert len(hits) == 1  # the loop is seen before a second request; no retries


def test_redirect_ping_pong_between_hosts(
    fake_registry: Any, fake_blob_host: Any, clean_env: Path
) -> None:
    path = f"/v2/r/blobs/{sha(BLOB)}"
    back = f"http://{fake_registry.host}{path}"
    fake_registry.route(
        path, lambda req: req.reply(302, b"", {"Location": f"http://{fake_blob_host.host}/b"})
    )
    fake_blob_host.route("/b", lambda req: req.reply(302, b"", {"Location": back}))
    with client_for(fake_registry) as c, pytest.raises(RegistryError) as info:
        c.open_blob("r", sha(BLOB), len(BLOB))
    assert "redirect loop" in one_line(info.value.message)
    assert len(fake_blob_host.log) == 1


def test_endless_redirect_chain_is_bounded(fake_registry: Any, clean_env: Path) -> None:
    path = f"/v2/r/blobs/{sha(BLOB)}"

    def chain(req: Any) -> None:
        n = int(req.path.partition("?n=")[2] or 0)
        req.reply(301, b"", {"Location": f"{path}?n={n + 1}"})

    fake_registry.route(path, chain)
    with client_for(fake_registry) as c, pytest.raises(RegistryError) as info:
        c.open_blob("r", sha(BLOB), len(BLOB))
    assert "more than 10 redirects" in one_line(info.value.message)
    assert len([e for e in fake_registry.log if e["path"].startswith(path)]) == 11


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://example.com/x", "gopher://x"])
def test_redirect_to_other_schemes_refused(
    fake_registry: Any, clean_env: Path, location: str
) -> None:
    path = f"/v2/r/blobs/{sha(BLOB)}"
    fake_registry.route(path, lambda req: req.reply(302, b"", {"Location": location}))
    with client_for(fake_registry) as c, pytest.raises(RegistryError) as info:
        c.open_blob("r", sha(BLOB), len(BLOB))
    assert "unsupported URL scheme" in one_line(info.value.message)


def test_https_to_http_downgrade_refused() -> None:
    from rootless.image.transport import Request, Response, _redirected

    request = Request("GET", "https://registry.example/v2/r/blobs/x", verify=True)
    response = Response(307, "", _headers(Location="http://cdn.example/x"), request.url)
    with pytest.raises(TransportError, match="redirect from https to plain http"):
        _redirected(request, response)
    insecure = Request("GET", "https://registry.example/v2/r/blobs/x", verify=False)
    assert _redirected(insecure, response).url == "http://cdn.example/x"


def _headers(**items: str) -> Any:
    from rootless.image.transport import Headers

    return Headers(items)


def test_pull_with_redirect_loop_cli(cli_factory: Any, fake_registry: Any, repo: FakeRepo) -> None:
    digest = repo.image("loop", [tar_of({"a": b"a"})])
    layer_digest = json.loads(repo.manifests[digest][0])["layers"][0]["digest"]
    path = f"/v2/r/blobs/{layer_digest}"
    fake_registry.route(path, lambda req: req.reply(307, b"", {"Location": path}))
    cli = cli_factory("nosub")
    proc = cli.run("pull", "-q", repo.ref("loop"))
    assert proc.returncode == 125, proc.stderr
    assert proc.stderr.count("\n") == 1 and "redirect loop" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    repo.image("good", [tar_of({"hello": b"hi\n"})])
    ok = cli.run("pull", "-q", repo.ref("good"))
    assert ok.returncode == 0, ok.stderr
    assert f"{repo.server.host}/r   good" in cli.run("images").stdout


# ---------------------------------------------------------------- indexes


def _index(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": t.OCI_INDEX, "manifests": entries}).encode()


AMD64 = {"os": "linux", "architecture": "amd64"}


def test_index_pointing_at_an_index(store: Store, repo: FakeRepo, clean_env: Path) -> None:
    inner = _index([])
    inner_digest = repo.put_manifest("inner", inner, t.OCI_INDEX)
    outer = _index(
        [
            {
                "mediaType": t.OCI_MANIFEST,
                "digest": inner_digest,
                "size": len(inner),
                "platform": AMD64,
            }
        ]
    )
    repo.put_manifest("nested", outer, t.OCI_INDEX)
    message = pull_fails(store, repo.ref("nested"), ManifestError)
    assert "not an image manifest" in message
    good_image_still_pulls(store, repo)


def test_index_entries_typed_as_index_are_not_followed(
    store: Store, repo: FakeRepo, clean_env: Path
) -> None:
    inner = _index([])
    inner_digest = repo.put_manifest("inner", inner, t.OCI_INDEX)
    outer = _index(
        [{"mediaType": t.OCI_INDEX, "digest": inner_digest, "size": len(inner), "platform": AMD64}]
    )
    repo.put_manifest("nested", outer, t.OCI_INDEX)
    message = pull_fails(store, repo.ref("nested"), ManifestError)
    assert "no image for platform" in message
    assert not [e for e in repo.server.log if inner_digest in str(e["path"])]


def test_index_referring_to_itself(store: Store, repo: FakeRepo, clean_env: Path) -> None:
    # an index cannot contain its own digest; a registry can still answer every
    # digest with the same index
    fake_digest = "sha256:" + "ab" * 32
    index = _index(
        [{"mediaType": t.OCI_MANIFEST, "digest": fake_digest, "size": 10, "platform": AMD64}]
    )
    repo.put_manifest("self", index, t.OCI_INDEX)
    repo.manifests[fake_digest] = (index, t.OCI_INDEX)
    message = pull_fails(store, repo.ref("self"), DigestMismatchError)
    assert "content has digest" in message
    good_image_still_pulls(store, repo)


# ---------------------------------------------------------------- malformed documents


def _manifest_with(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": t.OCI_MANIFEST,
        "config": {"mediaType": t.OCI_CONFIG, "digest": sha(b"{}"), "size": 2},
        "layers": [],
    }
    doc.update(changes)
    return doc


def _layer(**changes: Any) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": t.OCI_LAYER_GZIP, "digest": sha(BLOB), "size": 10}
    desc.update(changes)
    return desc


MALFORMED_MANIFESTS = {
    "not-json": (b"{not json", "not JSON"),
    "array": (b"[]", "not a JSON object"),
    "deeply-nested": (b'{"layers":' + b"[" * 200_000, "not JSON"),
    "layers-3": (_manifest_with(layers=3), "'layers' is not a list"),
    "layers-strings": (_manifest_with(layers=["sha256:x"]), "descriptor is not an object"),
    "size-negative": (
        _manifest_with(layers=[_layer(size=-1)]),
        "'size' is missing or not a non-negative",
    ),
    "size-string": (
        _manifest_with(layers=[_layer(size="10")]),
        "'size' is missing or not a non-negative",
    ),
    "size-bool": (
        _manifest_with(layers=[_layer(size=True)]),
        "'size' is missing or not a non-negative",
    ),
    "digest-dotdot": (_manifest_with(layers=[_layer(digest="sha256:../../x")]), "bad digest"),
    "digest-64-dotdot": (
        _manifest_with(layers=[_layer(digest="sha256:" + "../" * 21 + "x")]),
        "bad digest",
    ),
    "digest-number": (_manifest_with(layers=[_layer(digest=5)]), "'digest' is not a string"),
    "config-list": (_manifest_with(config=[]), "descriptor is not an object"),
    "config-missing": (
        {"schemaVersion": 2, "mediaType": t.OCI_MANIFEST, "layers": []},
        "missing 'config'",
    ),
    "schema-3": (_manifest_with(schemaVersion=3), "schemaVersion is 3"),
    "media-type-unknown": (
        _manifest_with(mediaType="application/vnd.evil+json"),
        "unsupported manifest media type",
    ),
    "media-type-number": (_manifest_with(mediaType=7), "'mediaType' is not a string"),
    "annotations-nested": (
        _manifest_with(annotations={"a": {"b": 1}}),
        "'annotations' values must be strings",
    ),
    "layer-media-type": (
        _manifest_with(layers=[_layer(mediaType="application/x-evil")]),
        "unsupported layer media type 'application/x-evil'",
    ),
    "layer-media-type-number": (
        _manifest_with(layers=[_layer(mediaType=1)]),
        "'mediaType' is not a string",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_MANIFESTS))
def test_malformed_manifests(store: Store, repo: FakeRepo, clean_env: Path, case: str) -> None:
    doc, expected = MALFORMED_MANIFESTS[case]
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    repo.put_manifest("bad", data)
    message = pull_fails(store, repo.ref("bad"), ManifestError)
    assert expected in message, message
    # nothing was downloaded beyond the manifest
    assert not [e for e in repo.server.log if "/blobs/" in str(e["path"])]
    assert store.images() == []


MALFORMED_CONFIGS = {
    "not-json": (b"\xff\xfe garbage", "not JSON"),
    "list": (b"[1, 2]", "not a JSON object"),
    "rootfs-string": ({"rootfs": "layers"}, "'rootfs' is not an object"),
    "diff-ids-3": ({"rootfs": {"type": "layers", "diff_ids": 3}}, "'diff_ids' is not a list"),
    "diff-id-dotdot": (
        {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "../" * 21 + "x"]}},
        "bad diff_id",
    ),
    "diff-id-short": ({"rootfs": {"type": "layers", "diff_ids": ["sha256:abc"]}}, "bad diff_id"),
    "env-string": ({"config": {"Env": "PATH=/bin"}}, "'Env' is not a list"),
    "cmd-ints": ({"config": {"Cmd": [1, 2]}}, "'Cmd' is not a list of strings"),
    "history-strings": ({"history": ["x"]}, "history entry is not an object"),
    "rootfs-type": ({"rootfs": {"type": "zfs", "diff_ids": []}}, "is not 'layers'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CONFIGS))
def test_malformed_configs(store: Store, repo: FakeRepo, clean_env: Path, case: str) -> None:
    doc, expected = MALFORMED_CONFIGS[case]
    layer = tar_of({"a": b"a"})
    if isinstance(doc, bytes):
        config: dict[str, Any] | bytes = doc
    else:
        config = repo.config([sha(layer)])
        for key, value in doc.items():
            config[key] = value
    repo.image("bad", [layer], config=config)
    message = pull_fails(store, repo.ref("bad"), ManifestError)
    assert expected in message, message
    assert store.images() == []
    good_image_still_pulls(store, repo)


def test_layer_count_mismatch(store: Store, repo: FakeRepo, clean_env: Path) -> None:
    layer = tar_of({"a": b"a"})
    repo.image("bad", [layer], config=repo.config([sha(layer), sha(b"other")]))
    assert "diff_ids" in pull_fails(store, repo.ref("bad"), ManifestError)


def test_invalid_digest_in_reference() -> None:
    from rootless.image.reference import Reference

    with pytest.raises(InvalidReferenceError):
        Reference.parse("127.0.0.1:5000/r@sha256:../../etc/passwd")


def test_malformed_manifest_cli(cli_factory: Any, repo: FakeRepo) -> None:
    repo.put_manifest("bad", json.dumps(_manifest_with(layers=3)).encode())
    cli = cli_factory("root")
    proc = cli.run("pull", "-q", repo.ref("bad"))
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "'layers' is not a list" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- bombs


def _zeros_tar(name: str, size: int) -> bytes:
    """A one-file tar of `size` zero bytes, built without holding them twice."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 1700000000
    head = info.tobuf(tarfile.PAX_FORMAT)
    return head + b"\0" * size + b"\0" * (-size % 512) + b"\0" * 1024


def test_gzip_bomb_stopped_by_the_layer_limit(
    store: Store, repo: FakeRepo, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOTLESS_MAX_LAYER_SIZE", "8M")
    bomb = _zeros_tar("zeros", 64 << 20)
    digest = repo.image("bomb", [bomb])
    compressed = json.loads(repo.manifests[digest][0])["layers"][0]
    assert compressed["size"] < 200_000  # 64 MiB in < 200 KB
    with pytest.raises(LimitExceededError) as info:
        pull(store, repo.ref("bomb"))
    message = one_line(str(info.value))
    assert message == (
        f"layer {compressed['digest']}: the uncompressed layer is over the limit of "
        "8 MiB (ROOTLESS_MAX_LAYER_SIZE)"
    )
    hexd = sha(bomb)[7:]
    assert not os.path.exists(os.path.join(store.root, "layers", hexd))
    assert (
        not os.listdir(os.path.join(store.root, "blobs", "tmp"))
        if os.path.isdir(os.path.join(store.root, "blobs", "tmp"))
        else True
    )
    good_image_still_pulls(store, repo)


def test_sparse_bomb_stopped_by_the_file_limit(
    store: Store, repo: FakeRepo, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOTLESS_MAX_FILE_SIZE", "1G")
    info = tarfile.TarInfo("GNUSparseFile.0/huge")
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "huge",
        "GNU.sparse.realsize": str(1 << 50),
    }
    body = b"1\n0\n0\n".ljust(512, b"\0")
    info.size = len(body)
    layer = info.tobuf(tarfile.PAX_FORMAT) + body + b"\0" * 1024
    digest = repo.image("sparse", [layer])
    layer_digest = json.loads(repo.manifests[digest][0])["layers"][0]["digest"]
    with pytest.raises(LimitExceededError) as exc:
        pull(store, repo.ref("sparse"))
    message = one_line(str(exc.value))
    assert message.startswith(f"layer {layer_digest}: huge: file of 1125899906842624 bytes")
    assert message.endswith("over the limit of 1073741824 bytes per file (ROOTLESS_MAX_FILE_SIZE)")
    assert not os.path.exists(os.path.join(store.root, "layers", sha(layer)[7:]))
    good_image_still_pulls(store, repo)


def test_bad_limit_value_is_a_usage_error(
    store: Store, repo: FakeRepo, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rootless.errors import UsageError

    monkeypatch.setenv("ROOTLESS_MAX_LAYER_SIZE", "lots")
    with pytest.raises(UsageError, match="invalid ROOTLESS_MAX_LAYER_SIZE 'lots'"):
        pull(store, repo.ref("whatever"))
    assert repo.server.log == []


def test_limit_parsing() -> None:
    from rootless.image.limits import LayerLimits, parse_size

    assert parse_size("64G", "X") == 64 << 30
    assert parse_size("64GiB", "X") == 64 << 30
    assert parse_size("1.5m", "X") == 3 << 19
    assert parse_size("12345", "X") == 12345
    assert parse_size("none", "X") == 0 and parse_size("0", "X") == 0
    limits = LayerLimits.from_environment({"ROOTLESS_MAX_LAYER_SIZE": "1T"})
    assert limits.max_layer_size == 1 << 40 and limits.max_file_size == 1 << 40
    default = LayerLimits.from_environment({})
    assert default.max_layer_size == 64 << 30 and default.max_archive_size == 256 << 30


def test_bomb_cli_as_every_identity(cli: Any, repo: FakeRepo) -> None:
    bomb = _zeros_tar("zeros", 32 << 20)
    repo.image("bomb", [bomb])
    proc = cli.run("pull", "-q", repo.ref("bomb"), env={"ROOTLESS_MAX_LAYER_SIZE": "4M"})
    assert proc.returncode == 125, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "over the limit of 4 MiB (ROOTLESS_MAX_LAYER_SIZE)" in proc.stderr
    layers = os.path.join(cli.store, "layers")
    assert not os.path.exists(os.path.join(layers, sha(bomb)[7:]))
    repo.image("good", [tar_of({"hello": b"hi\n"})])
    ok = cli.run("pull", "-q", repo.ref("good"))
    assert ok.returncode == 0, ok.stderr


# ---------------------------------------------------------------- token realms


def test_realm_policy() -> None:
    assert realm_gets_credentials("https://auth.docker.io/token", "registry-1.docker.io", True)
    assert realm_gets_credentials("http://reg.example:5001/token", "reg.example:5000", True)
    assert realm_gets_credentials("https://REG.example/token", "reg.example", False)
    assert not realm_gets_credentials("http://evil.example/token", "reg.example", True)
    assert not realm_gets_credentials("https://evil.example/token", "reg.example", False)
    assert not realm_gets_credentials("http://localhost:1/token", "127.0.0.1:5000", True)


def _bearer_registry(fake_registry: Any, realm: str) -> None:
    def needs_token(req: Any) -> None:
        if req.headers.get("Authorization") == "Bearer anon-token":
            req.reply(200, b"{}")
            return
        req.reply(
            401,
            b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}',
            {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="x"'},
        )

    fake_registry.route("/v2/", needs_token)


def _token_server(server: Any) -> None:
    def token(req: Any) -> None:
        if req.headers.get("Authorization"):
            req.reply(200, b'{"token": "with-credentials"}')
        else:
            req.reply(200, b'{"token": "anon-token"}')

    server.route("/token", token)


def test_credentials_not_sent_to_a_realm_on_another_host(
    fake_registry: Any, fake_blob_host: Any, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fake_blob_host.host.split(":")[1]
    realm = f"http://localhost:{port}/token"  # another host name, plain http
    _bearer_registry(fake_registry, realm)
    _token_server(fake_blob_host)
    creds = Credentials("alice", "secret-password")
    with client_for(fake_registry, credentials=creds) as c:
        c.check_login()  # the anonymous token is enough for this registry
    assert fake_blob_host.log and all(e["authorization"] is None for e in fake_blob_host.log)
    assert all("alice" not in str(e["path"]) for e in fake_blob_host.log)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"not sending your credentials for {fake_registry.host} to its token service" in err
    assert f"http://localhost:{port}" in err


def test_credentials_sent_to_a_realm_on_the_same_host(
    fake_registry: Any, fake_blob_host: Any, clean_env: Path
) -> None:
    realm = f"http://{fake_blob_host.host}/token"  # 127.0.0.1, another port
    _bearer_registry(fake_registry, realm)

    def token(req: Any) -> None:
        expected = "Basic " + base64.b64encode(b"alice:pw").decode()
        ok = req.headers.get("Authorization") == expected
        req.reply(200, b'{"token": "anon-token"}' if ok else b'{"token": "wrong"}')

    fake_blob_host.route("/token", token)
    with client_for(fake_registry, credentials=Credentials("alice", "pw")) as c:
        c.check_login()
    assert fake_blob_host.log[-1]["authorization"] is not None
    assert "account=alice" in str(fake_blob_host.log[-1]["path"])


def test_identity_token_not_sent_to_another_host(fake_blob_host: Any, clean_env: Path) -> None:
    _token_server(fake_blob_host)
    port = fake_blob_host.host.split(":")[1]
    auth = Authenticator(
        HTTPTransport(), "127.0.0.1:5000", Credentials(identity_token="refresh-me")
    )
    auth.learn(f'Bearer realm="http://localhost:{port}/token",service="s"')
    assert auth.authorization(("repository:r:pull",)) == "Bearer anon-token"
    assert [e["method"] for e in fake_blob_host.log] == ["GET"]


def test_withheld_credentials_named_in_the_failure(
    fake_registry: Any, fake_blob_host: Any, clean_env: Path
) -> None:
    port = fake_blob_host.host.split(":")[1]
    fake_registry.route(
        "/v2/",
        lambda req: req.reply(
            401,
            b'{"errors":[{"code":"UNAUTHORIZED","message":"denied"}]}',
            {"WWW-Authenticate": f'Bearer realm="http://localhost:{port}/token"'},
        ),
    )
    fake_blob_host.route("/token", lambda req: req.reply(401, b'{"details": "no anonymous"}'))
    with (
        client_for(fake_registry, credentials=Credentials("alice", "pw")) as c,
        pytest.raises(RegistryError) as info,
    ):
        c.check_login()
    assert "authentication required" in info.value.message
    assert "were not sent to its token service" in str(info.value.hint)
