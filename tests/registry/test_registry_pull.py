"""Pull-side client against a real docker-registry with images pushed by skopeo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import DigestMismatchError, RegistryError
from rootless.image import types as t
from rootless.image.manifest import (
    host_platform,
    parse_image_config,
    parse_platform,
    select_platform,
)
from rootless.image.reference import Reference
from rootless.image.registry import RegistryClient


@pytest.fixture()
def client(plain_registry: Any, images: Any, clean_env: Path) -> Any:
    with RegistryClient(plain_registry.host, retries=1, backoff=0) as c:
        yield c


def test_ping_uses_plain_http_for_loopback(client: RegistryClient) -> None:
    client.ping()
    assert client.insecure
    assert client.base_url.startswith("http://127.0.0.1:")


def test_manifest_by_tag_and_by_digest(client: RegistryClient, images: Any) -> None:
    fetched = client.get_manifest("test/simple", "v1")
    assert fetched.media_type == t.OCI_MANIFEST
    assert fetched.digest == images.simple.digest
    assert fetched.data == images.simple.manifest
    by_digest = client.get_manifest("test/simple", images.simple.digest)
    assert by_digest == fetched
    manifest = fetched.parse()
    assert isinstance(manifest, t.Manifest)
    assert manifest.layers[0].media_type == t.OCI_LAYER_GZIP


def test_head_manifest(client: RegistryClient, images: Any) -> None:
    desc = client.head_manifest("test/simple", "v1")
    assert desc == t.Descriptor(t.OCI_MANIFEST, images.simple.digest, len(images.simple.manifest))
    assert client.head_manifest("test/simple", "nope") is None


def test_accept_negotiation_docker_v2s2(client: RegistryClient, images: Any) -> None:
    fetched = client.get_manifest("test/docker", "v1")
    assert fetched.media_type == t.DOCKER_MANIFEST
    assert fetched.digest == images.docker_digest
    manifest = fetched.parse()
    assert isinstance(manifest, t.Manifest)
    assert manifest.config.media_type == t.DOCKER_CONFIG
    assert manifest.layers[0].media_type == t.DOCKER_LAYER_GZIP
    # Accepting only OCI, distribution 2.8 refuses the Docker-only manifest (it tries
    # a schema 1 down-conversion and fails); the error quotes the registry.
    with pytest.raises(RegistryError, match=r"reading manifest v1 in .*: manifest invalid"):
        client.get_manifest("test/docker", "v1", accept=[t.OCI_MANIFEST])


def test_index_platform_selection(client: RegistryClient, images: Any) -> None:
    fetched = client.get_manifest("test/multi", "v1")
    assert fetched.media_type == t.OCI_INDEX
    assert fetched.data == images.index
    index = fetched.parse("test/multi:v1")
    assert isinstance(index, t.Index)
    arm = select_platform(index, parse_platform("linux/arm64/v8"))
    assert arm.digest == images.arm64.digest
    amd = select_platform(index, host_platform("x86_64"))
    assert amd.digest == images.amd64.digest
    child = client.get_manifest("test/multi", arm.digest)
    assert child.data == images.arm64.manifest
    with pytest.raises(Exception, match="available: linux/amd64, linux/arm64/v8"):
        select_platform(index, parse_platform("linux/s390x"), context="test/multi:v1")


def test_blob_streaming_verifies(client: RegistryClient, images: Any) -> None:
    manifest = client.get_manifest("test/simple", "v1").parse()
    assert isinstance(manifest, t.Manifest)
    layer = manifest.layers[0]
    h = hashlib.sha256()
    with client.open_blob("test/simple", layer.digest, layer.size) as reader:
        while chunk := reader.read(7):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == layer.digest
    assert reader.offset == layer.size
    config = client.fetch_blob("test/simple", manifest.config.digest, manifest.config.size)
    assert config == images.simple.config
    assert parse_image_config(config).cmd == ("/hello",)


def test_blob_wrong_size_in_descriptor(client: RegistryClient, images: Any) -> None:
    manifest = client.get_manifest("test/simple", "v1").parse()
    assert isinstance(manifest, t.Manifest)
    layer = manifest.layers[0]
    with (
        pytest.raises(DigestMismatchError, match="expected"),
        client.open_blob("test/simple", layer.digest, layer.size - 1) as reader,
    ):
        reader.read()


def test_zstd_layer(client: RegistryClient, images: Any) -> None:
    if images.zstd is None:
        pytest.skip("zstandard not installed")
    import zstandard

    manifest = client.get_manifest("test/zstd", "v1").parse()
    assert isinstance(manifest, t.Manifest)
    assert manifest.layers[0].media_type == t.OCI_LAYER_ZSTD
    with client.open_blob("test/zstd", manifest.layers[0].digest) as reader:
        data = reader.read()
    tar = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    config = json.loads(client.fetch_blob("test/zstd", manifest.config.digest))
    assert config["rootfs"]["diff_ids"][0] == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_unknown_tag_quotes_registry(
    client: RegistryClient, images: Any, plain_registry: Any
) -> None:
    with pytest.raises(RegistryError) as info:
        client.get_manifest("test/simple", "nope")
    assert info.value.message == (
        f"reading manifest nope in {plain_registry.host}/test/simple: manifest unknown"
    )


def test_unknown_repository(client: RegistryClient, images: Any) -> None:
    with pytest.raises(RegistryError, match="no/such: manifest unknown"):
        client.get_manifest("no/such", "v1")
    with pytest.raises(RegistryError) as info:
        client.list_tags("no/such")
    assert info.value.message.endswith(
        "no/such: name unknown: repository name not known to registry"
    )


def test_unknown_digest(client: RegistryClient, images: Any) -> None:
    missing = "sha256:" + "0" * 64
    with pytest.raises(RegistryError, match="manifest unknown"):
        client.get_manifest("test/simple", missing)
    with pytest.raises(RegistryError, match="blob unknown: blob unknown to registry"):
        client.open_blob("test/simple", missing)


def test_list_tags(client: RegistryClient, images: Any) -> None:
    assert client.list_tags("test/simple") == ["v1"]


def test_for_reference(plain_registry: Any, images: Any, clean_env: Path) -> None:
    ref = Reference.parse(f"{plain_registry.host}/test/simple:v1")
    with RegistryClient.for_reference(ref) as c:
        assert c.get_manifest(ref.repository, ref.identifier).digest == images.simple.digest


def test_unreachable_registry(clean_env: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RegistryClient(f"127.0.0.1:{port}", retries=0) as c, pytest.raises(RegistryError) as info:
        c.ping()
    assert info.value.message == f"registry 127.0.0.1:{port} unreachable: connection refused"
    assert info.value.hint


def test_unresolvable_registry(clean_env: Path) -> None:
    with (
        RegistryClient("no-such-host.invalid", retries=0, timeout=5) as c,
        pytest.raises(RegistryError, match="unreachable: cannot resolve host name"),
    ):
        c.ping()
