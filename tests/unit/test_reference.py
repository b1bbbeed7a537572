"""Image reference parsing and docker-style normalisation (pure)."""

from __future__ import annotations

import pytest

from rootless.errors import InvalidReferenceError
from rootless.image.reference import Reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text",
    [
        "centos",
        "centos:latest",
        "library/centos:latest",
        "docker.io/library/centos:latest",
        "index.docker.io/library/centos:latest",
        "docker.io/centos",
        "index.docker.io/centos:latest",
    ],
)
def test_five_spellings_are_one_image(text: str) -> None:
    ref = Reference.parse(text)
    assert ref == Reference("docker.io", "library/centos", "latest", None)
    assert str(ref) == "docker.io/library/centos:latest"
    assert ref.familiar() == "centos:latest"
    assert ref.registry == "registry-1.docker.io"
    assert ref.repository == "library/centos"
    assert ref.tag == "latest"
    assert ref.digest is None


@pytest.mark.parametrize(
    ("text", "domain", "repo", "tag", "digest"),
    [
        ("user/app:1.0", "docker.io", "user/app", "1.0", None),
        ("quay.io/org/app", "quay.io", "org/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:v2", "localhost:5000", "app", "v2", None),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        (
            "registry.example.com:443/x_y/z-w.v__q",
            "registry.example.com:443",
            "x_y/z-w.v__q",
            "latest",
            None,
        ),
        (f"centos@{DIGEST}", "docker.io", "library/centos", None, DIGEST),
        (f"centos:7@{DIGEST}", "docker.io", "library/centos", "7", DIGEST),
        ("a--b/c", "docker.io", "a--b/c", "latest", None),
    ],
)
def test_parse_components(
    text: str, domain: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.domain, ref.repository, ref.tag, ref.digest) == (domain, repo, tag, digest)


def test_digest_pin_and_identifier() -> None:
    ref = Reference.parse(f"quay.io/x/y@{DIGEST}")
    assert ref.identifier == DIGEST
    assert str(ref) == f"quay.io/x/y@{DIGEST}"
    assert ref.familiar() == f"quay.io/x/y@{DIGEST}"
    both = Reference.parse(f"quay.io/x/y:v1@{DIGEST}")
    assert both.identifier == DIGEST
    assert str(both) == f"quay.io/x/y:v1@{DIGEST}"


def test_registry_host_for_non_hub_is_domain() -> None:
    assert Reference.parse("ghcr.io/o/r").registry == "ghcr.io"
    assert Reference.parse("localhost:5000/r").registry == "localhost:5000"


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("centos", "centos:latest"),
        ("user/app:1", "user/app:1"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("quay.io/org/app:2", "quay.io/org/app:2"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert Reference.parse(text).familiar() == familiar


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("centos")
    assert str(ref.with_tag("8")) == "docker.io/library/centos:8"
    assert ref.with_digest(DIGEST).digest == DIGEST
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("-bad")
    with pytest.raises(InvalidReferenceError):
        ref.with_digest("sha256:abc")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Centos", "must be lowercase"),
        ("docker.io/Library/centos", "must be lowercase"),
        ("centos:" + "a" * 129, "longer than 128"),
        ("centos:-bad", "bad tag"),
        ("centos:ba$d", "bad tag"),
        ("centos@sha256:abc", "64 lowercase hex"),
        ("centos@sha256:" + "AB" * 32, "64 lowercase hex"),
        ("centos@md5:" + "a" * 32, "unsupported algorithm"),
        ("centos@nothex", "expected algorithm:hex"),
        ("", "empty"),
        (" centos", "whitespace"),
        ("a//b", "bad repository name"),
        ("-a/b", "bad repository name"),
        ("quay.io/", "repository name is empty"),
        ("bad_host.io:x/app", "bad registry host"),
        ("a" * 64, "image ID"),
        ("x.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_invalid(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert why in info.value.message
    assert repr(text) in info.value.message


def test_tag_of_128_is_fine() -> None:
    assert Reference.parse("a:" + "b" * 128).tag == "b" * 128


def test_frozen_and_hashable() -> None:
    assert len({Reference.parse("centos"), Reference.parse("docker.io/library/centos")}) == 1
