"""Push primitives against a real docker-registry, cross-checked with skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import RegistryError
from rootless.image import types as t
from rootless.image.manifest import manifest_to_json
from rootless.image.registry import RegistryClient


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture()
def client(plain_registry: Any, clean_env: Path) -> Any:
    with RegistryClient(plain_registry.host, retries=1, backoff=0) as c:
        yield c


def skopeo_inspect(home: Path, ref: str, *extra: str) -> Any:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{ref}"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(out)


def test_push_image_and_read_back_with_skopeo(
    client: RegistryClient, plain_registry: Any, images: Any, clean_env: Path
) -> None:
    layer = b"layer bytes " * 5000  # not a real tar: skopeo inspect does not unpack
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/pushed"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
        }
    ).encode()
    repo = "pushed/app"
    assert client.blob_exists(repo, digest_of(layer)) is None
    client.upload_blob(repo, digest_of(layer), layer)  # monolithic
    client.upload_blob(repo, digest_of(config), io.BytesIO(config), len(config), chunk_size=100)
    assert client.blob_exists(repo, digest_of(layer)) == len(layer)
    assert client.blob_exists(repo, digest_of(config)) == len(config)
    manifest = t.Manifest(
        media_type=t.OCI_MANIFEST,
        config=t.Descriptor(t.OCI_CONFIG, digest_of(config), len(config)),
        layers=(t.Descriptor(t.OCI_LAYER, digest_of(layer), len(layer)),),
    )
    data = manifest_to_json(manifest)
    assert client.put_manifest(repo, "v1", data, t.OCI_MANIFEST) == digest_of(data)

    fetched = client.get_manifest(repo, "v1")
    assert fetched.data == data and fetched.digest == digest_of(data)
    with client.open_blob(repo, digest_of(layer), len(layer)) as reader:
        assert reader.read() == layer
    info = skopeo_inspect(images.home, f"{plain_registry.host}/{repo}:v1")
    assert info["Digest"] == digest_of(data)
    assert info["Layers"] == [digest_of(layer)]
    raw = skopeo_inspect(images.home, f"{plain_registry.host}/{repo}:v1", "--config", "--raw")
    assert raw["config"]["Cmd"] == ["/pushed"]


def test_stream_upload_monolithic(client: RegistryClient) -> None:
    data = b"x" * 200_000
    client.upload_blob("pushed/stream", digest_of(data), io.BytesIO(data), len(data))
    assert client.blob_exists("pushed/stream", digest_of(data)) == len(data)


def test_cross_repository_mount(client: RegistryClient) -> None:
    data = b"mount me"
    client.upload_blob("pushed/source", digest_of(data), data)
    assert client.mount_blob("pushed/target", digest_of(data), "pushed/source")
    assert client.blob_exists("pushed/target", digest_of(data)) == len(data)
    other = b"not there"
    assert not client.mount_blob("pushed/target", digest_of(other), "pushed/source")
    client.upload_blob("pushed/target", digest_of(other), other, mount_from="pushed/source")
    assert client.blob_exists("pushed/target", digest_of(other)) == len(other)


def test_upload_with_wrong_digest_is_refused(client: RegistryClient) -> None:
    with pytest.raises(RegistryError) as info:
        client.upload_blob("pushed/bad", digest_of(b"other"), b"content")
    assert "digest invalid" in info.value.message


def test_manifest_referring_to_missing_blob(client: RegistryClient) -> None:
    manifest = t.Manifest(
        media_type=t.OCI_MANIFEST,
        config=t.Descriptor(t.OCI_CONFIG, "sha256:" + "1" * 64, 2),
        layers=(),
    )
    with pytest.raises(RegistryError) as info:
        client.put_manifest("pushed/none", "v1", manifest_to_json(manifest), t.OCI_MANIFEST)
    assert info.value.message.startswith("writing manifest v1 to")
    assert "blob unknown" in info.value.message or "manifest blob unknown" in info.value.message


def test_push_through_token_auth(
    token_registry: Any, token_server: Any, accounts: Any, clean_env: Path
) -> None:
    from rootless.image.auth import Credentials

    creds = Credentials(accounts.token_user, accounts.token_password)
    data = b"token pushed blob"
    with RegistryClient(token_registry.host, credentials=creds, retries=0) as c:
        c.upload_blob("private/pushed", digest_of(data), data)
        assert c.blob_exists("private/pushed", digest_of(data)) == len(data)
    scopes = [str(s["path"]) for s in token_server.seen]
    assert any("private%2Fpushed%3Apull%2Cpush" in s for s in scopes)
