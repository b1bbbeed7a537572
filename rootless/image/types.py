"""Image data model: frozen dataclasses and media-type constants, no I/O.

The shapes follow the OCI image spec (and go-containerregistry's `pkg/v1`): a
`Manifest` points at one config blob and an ordered list of layer blobs; an `Index`
(OCI index or Docker manifest list) points at per-platform manifests. Parsing and
validation live in `rootless.image.manifest`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rootless.errors import InvalidReferenceError

# OCI image spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

# Docker image manifest v2, schema 2
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# Docker schema 1 (deprecated, refused with a clear error)
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
GZIP_LAYER_TYPES = frozenset(
    {OCI_LAYER_GZIP, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER}
)
ZSTD_LAYER_TYPES = frozenset({OCI_LAYER_ZSTD, OCI_LAYER_NONDIST_ZSTD, DOCKER_LAYER_ZSTD})
PLAIN_LAYER_TYPES = frozenset({OCI_LAYER, OCI_LAYER_NONDIST})
LAYER_TYPES = GZIP_LAYER_TYPES | ZSTD_LAYER_TYPES | PLAIN_LAYER_TYPES

# What a client accepts when fetching a manifest by tag, most preferred first.
MANIFEST_ACCEPT: tuple[str, ...] = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}

EMPTY_MAPPING: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return EMPTY_MAPPING


def validate_digest(digest: str) -> str:
    """Return `digest` if it is `algorithm:hex` with a known algorithm, else raise.

    Raises InvalidReferenceError (a digest is part of a reference).
    """
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise InvalidReferenceError(f"invalid digest {digest!r}: expected algorithm:hex")
    algorithm, encoded = match.groups()
    want = _DIGEST_HEX_LEN.get(algorithm)
    if want is None:
        raise InvalidReferenceError(
            f"invalid digest {digest!r}: unsupported algorithm {algorithm!r}",
            hint="use a sha256 digest",
        )
    if len(encoded) != want or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise InvalidReferenceError(
            f"invalid digest {digest!r}: {algorithm} needs {want} lowercase hex digits"
        )
    return digest


def is_digest(value: str) -> bool:
    """Whether `value` is a well-formed digest (no exception)."""
    try:
        validate_digest(value)
    except InvalidReferenceError:
        return False
    return True


def _shown(part: str) -> str:
    """`part` as is when printable, else with escapes (\\n, \\x1b...) in place of the rest."""
    return part if part.isprintable() else part.encode("unicode_escape").decode("ascii")


@dataclass(frozen=True)
class Platform:
    """An os/architecture[/variant] pair, as in an index entry or an image config."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        # the parts come from registries too: never let them break a line of output
        base = f"{_shown(self.os)}/{_shown(self.architecture)}"
        return f"{base}/{_shown(self.variant)}" if self.variant else base


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest and size (OCI descriptor)."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=_empty, compare=False)
    platform: Platform | None = None
    artifact_type: str = ""


@dataclass(frozen=True)
class Manifest:
    """A single-platform image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    schema_version: int = 2
    annotations: Mapping[str, str] = field(default_factory=_empty, compare=False)
    subject: Descriptor | None = None
    artifact_type: str = ""


@dataclass(frozen=True)
class Index:
    """A multi-platform index (OCI image index or Docker manifest list)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    schema_version: int = 2
    annotations: Mapping[str, str] = field(default_factory=_empty, compare=False)


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of an image config's `history`."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config blob that running and inspecting need.

    `entrypoint`/`cmd` are None when the image does not set them (as opposed to an
    explicitly empty list). `raw` keeps the decoded JSON for fields not modelled here.
    """

    architecture: str
    os: str
    diff_ids: tuple[str, ...]
    variant: str = ""
    os_version: str = ""
    created: str = ""
    author: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=_empty, compare=False)
    stop_signal: str = ""
    history: tuple[HistoryEntry, ...] = ()
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)
