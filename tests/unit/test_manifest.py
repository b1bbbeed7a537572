"""Manifest / index / config parsing and platform selection (pure)."""

from __future__ import annotations

import json

import pytest

from rootless.errors import ManifestError, UsageError
from rootless.image import types as t
from rootless.image.manifest import (
    available_platforms,
    host_platform,
    manifest_to_json,
    match_platform,
    normalize_platform,
    parse_image_config,
    parse_manifest,
    parse_platform,
    select_platform,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(media_type: str, digest: str = D1, size: int = 10, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image_manifest(media_type: str = t.OCI_MANIFEST, **extra: object) -> bytes:
    config_type = t.OCI_CONFIG if media_type == t.OCI_MANIFEST else t.DOCKER_CONFIG
    layer_type = t.OCI_LAYER_GZIP if media_type == t.OCI_MANIFEST else t.DOCKER_LAYER_GZIP
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(config_type, D1, 100),
        "layers": [desc(layer_type, D2, 2000), desc(layer_type, D3, 3000)],
        **extra,
    }
    return json.dumps(doc).encode()


def entry(os_: str, arch: str, variant: str = "", digest: str = D1) -> dict[str, object]:
    platform: dict[str, object] = {"os": os_, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return desc(t.OCI_MANIFEST, digest, 500, platform=platform)


def index(*entries: dict[str, object], media_type: str = t.OCI_INDEX) -> t.Index:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, t.Index)
    return parsed


# ---------------------------------------------------------------- manifests


@pytest.mark.parametrize("media_type", [t.OCI_MANIFEST, t.DOCKER_MANIFEST])
def test_parse_image_manifest(media_type: str) -> None:
    m = parse_manifest(image_manifest(media_type))
    assert isinstance(m, t.Manifest)
    assert m.media_type == media_type
    assert m.config.digest == D1 and m.config.size == 100
    assert [layer.digest for layer in m.layers] == [D2, D3]
    assert all(layer.media_type in t.GZIP_LAYER_TYPES for layer in m.layers)


def test_media_type_from_content_type_when_json_lacks_it() -> None:
    doc = json.loads(image_manifest())
    del doc["mediaType"]
    m = parse_manifest(json.dumps(doc).encode(), "application/vnd.oci.image.manifest.v1+json")
    assert isinstance(m, t.Manifest) and m.media_type == t.OCI_MANIFEST
    m2 = parse_manifest(json.dumps(doc).encode(), "application/json")
    assert m2.media_type == t.OCI_MANIFEST  # guessed from the shape


def test_round_trip_serialisation() -> None:
    m = parse_manifest(image_manifest(annotations={"a": "b"}))
    again = parse_manifest(manifest_to_json(m))
    assert again == m
    assert dict(again.annotations) == {"a": "b"}
    idx = index(entry("linux", "amd64"), entry("linux", "arm64", "v8", D2))
    assert parse_manifest(manifest_to_json(idx)) == idx


def test_parse_index_and_manifest_list() -> None:
    idx = index(entry("linux", "amd64"), media_type=t.DOCKER_MANIFEST_LIST)
    assert idx.media_type == t.DOCKER_MANIFEST_LIST
    assert idx.manifests[0].platform == t.Platform("linux", "amd64")


@pytest.mark.parametrize("media_type", [t.DOCKER_SCHEMA1, t.DOCKER_SCHEMA1_SIGNED])
def test_schema1_refused_clearly(media_type: str) -> None:
    doc = {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": [], "history": []}
    with pytest.raises(ManifestError) as info:
        parse_manifest(json.dumps(doc).encode(), media_type, context="docker.io/old/img:1")
    assert "schema 1" in info.value.message
    assert info.value.message.startswith("docker.io/old/img:1")
    assert info.value.hint


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"schemaVersion": 3, "mediaType": "' + t.OCI_MANIFEST.encode() + b'"}', "schemaVersion"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": t.OCI_MANIFEST}).encode(),
            "missing 'config'",
        ),
        (json.dumps({"schemaVersion": 2, "mediaType": t.OCI_INDEX}).encode(), "'manifests'"),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": t.OCI_MANIFEST,
                    "config": {"mediaType": t.OCI_CONFIG, "digest": "sha256:12", "size": 1},
                }
            ).encode(),
            "bad digest",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": t.OCI_MANIFEST,
                    "config": {"mediaType": t.OCI_CONFIG, "digest": D1, "size": -1},
                }
            ).encode(),
            "non-negative",
        ),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}).encode(),
            "unsupported manifest media type",
        ),
    ],
)
def test_invalid_manifests(data: bytes, why: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data)
    assert why in info.value.message


def test_docker_manifest_with_non_image_config_refused() -> None:
    doc = json.loads(image_manifest(t.DOCKER_MANIFEST))
    doc["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    with pytest.raises(ManifestError, match="not an image config"):
        parse_manifest(json.dumps(doc).encode())


# ---------------------------------------------------------------- config


def test_parse_image_config() -> None:
    doc = {
        "architecture": "arm64",
        "variant": "v8",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/bin"],
            "Entrypoint": ["/init"],
            "Cmd": None,
            "WorkingDir": "/w",
            "User": "1000:1000",
            "ExposedPorts": {"80/tcp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"k": "v"},
            "StopSignal": "SIGTERM",
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "RUN x"}, {"created_by": "ENV", "empty_layer": True}],
    }
    cfg = parse_image_config(json.dumps(doc).encode())
    assert cfg.platform == t.Platform("linux", "arm64", "v8")
    assert cfg.env == ("PATH=/usr/bin",)
    assert cfg.entrypoint == ("/init",)
    assert cfg.cmd is None
    assert cfg.working_dir == "/w" and cfg.user == "1000:1000"
    assert cfg.exposed_ports == ("80/tcp",) and cfg.volumes == ("/data",)
    assert dict(cfg.labels) == {"k": "v"}
    assert cfg.diff_ids == (D1, D2)
    assert cfg.history[1].empty_layer
    assert cfg.raw["os"] == "linux"


def test_parse_minimal_config() -> None:
    cfg = parse_image_config(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}')
    assert cfg.diff_ids == () and cfg.entrypoint is None and cfg.env == ()


def test_bad_config() -> None:
    with pytest.raises(ManifestError, match="Env"):
        parse_image_config(b'{"config": {"Env": "PATH=/x"}}')
    with pytest.raises(ManifestError, match="rootfs type"):
        parse_image_config(b'{"rootfs": {"type": "other"}}')


# ---------------------------------------------------------------- platforms


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", t.Platform("linux", "amd64")),
        ("aarch64", t.Platform("linux", "arm64", "v8")),
        ("armv7l", t.Platform("linux", "arm", "v7")),
        ("armv6l", t.Platform("linux", "arm", "v6")),
        ("i686", t.Platform("linux", "386")),
        ("ppc64le", t.Platform("linux", "ppc64le")),
        ("s390x", t.Platform("linux", "s390x")),
        ("riscv64", t.Platform("linux", "riscv64")),
    ],
)
def test_host_platform(machine: str, expected: t.Platform) -> None:
    assert host_platform(machine) == expected


def test_host_platform_default_uses_uname() -> None:
    assert host_platform().os == "linux"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", t.Platform("linux", "amd64")),
        ("linux/x86_64", t.Platform("linux", "amd64")),
        ("linux/arm64/v8", t.Platform("linux", "arm64", "v8")),
        ("linux/aarch64", t.Platform("linux", "arm64")),
        ("linux/arm/v7", t.Platform("linux", "arm", "v7")),
        ("linux/arm/7", t.Platform("linux", "arm", "v7")),
        ("Linux/AMD64", t.Platform("linux", "amd64")),
        ("arm64", t.Platform("linux", "arm64")),
    ],
)
def test_parse_platform(text: str, expected: t.Platform) -> None:
    assert parse_platform(text) == expected


@pytest.mark.parametrize("text", ["", "linux/", "/amd64", "a/b/c/d", "linux//v7", "l\nux/amd64",
                                  "linux/amd 64", "linux/\x1b[2J"])
def test_parse_platform_invalid(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        parse_platform(text)


def test_platform_str() -> None:
    assert str(t.Platform("linux", "arm", "v7")) == "linux/arm/v7"
    assert str(t.Platform("linux", "amd64")) == "linux/amd64"
    assert str(normalize_platform(t.Platform("linux", "aarch64", "8"))) == "linux/arm64/v8"


def test_select_exact_platform() -> None:
    idx = index(entry("linux", "amd64", digest=D1), entry("linux", "arm64", "v8", D2))
    assert select_platform(idx, t.Platform("linux", "amd64")).digest == D1
    assert select_platform(idx, t.Platform("linux", "arm64", "v8")).digest == D2
    assert select_platform(idx, parse_platform("linux/aarch64")).digest == D2


def test_arm64_without_variant_matches_v8() -> None:
    idx = index(entry("linux", "arm64", digest=D2))
    assert select_platform(idx, host_platform("aarch64")).digest == D2


def test_variant_selection_prefers_exact_then_compatible() -> None:
    idx = index(
        entry("linux", "arm", "v6", D1),
        entry("linux", "arm", "v7", D2),
        entry("linux", "amd64", digest=D3),
    )
    assert select_platform(idx, parse_platform("linux/arm/v7")).digest == D2
    assert select_platform(idx, parse_platform("linux/arm/v6")).digest == D1
    assert select_platform(idx, parse_platform("linux/arm")).digest == D2  # default v7
    only_v6 = index(entry("linux", "arm", "v6", D1))
    assert select_platform(only_v6, parse_platform("linux/arm/v7")).digest == D1
    only_v7 = index(entry("linux", "arm", "v7", D2))
    assert match_platform(only_v7, parse_platform("linux/arm/v6")) is None


def test_variant_without_default_falls_back_to_first() -> None:
    idx = index(entry("linux", "amd64", "v3", D1))
    assert select_platform(idx, t.Platform("linux", "amd64")).digest == D1


def test_no_matching_platform_lists_available() -> None:
    idx = index(
        entry("linux", "amd64", digest=D1),
        entry("linux", "arm64", "v8", D2),
        entry("unknown", "unknown", digest=D3),  # buildkit attestation
    )
    assert available_platforms(idx) == ["linux/amd64", "linux/arm64/v8"]
    with pytest.raises(ManifestError) as info:
        select_platform(idx, t.Platform("linux", "s390x"), context="docker.io/library/x:1")
    msg = info.value.message
    assert msg == (
        "docker.io/library/x:1: no image for platform linux/s390x; "
        "available: linux/amd64, linux/arm64/v8"
    )
    assert info.value.hint and "--platform" in info.value.hint


def test_platform_names_from_a_registry_never_break_the_line() -> None:
    idx = index(entry("l\nux", "arm", "v7", D1), entry("linux", "\x1b[2J", digest=D2))
    # escaped, and lower-cased like every platform name
    assert available_platforms(idx) == ["l\\nux/arm/v7", "linux/\\x1b[2j"]
    with pytest.raises(ManifestError) as info:
        select_platform(idx, t.Platform("linux", "amd64"))
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_entries_without_platform_are_skipped() -> None:
    idx = index(desc(t.OCI_MANIFEST, D1, 5))
    with pytest.raises(ManifestError, match="available: none"):
        select_platform(idx, t.Platform("linux", "amd64"))


def test_digest_helpers() -> None:
    assert t.is_digest(D1)
    assert t.is_digest("sha512:" + "a" * 128)
    assert not t.is_digest("sha256:" + "a" * 63)
    assert not t.is_digest("sha1:" + "a" * 40)
