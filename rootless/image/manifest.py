"""Parse and validate manifests, indexes and image configs; pick a platform.

Accepted: OCI image manifest and index, Docker schema 2 manifest and manifest list.
Docker schema 1 is refused with a clear error (it has been deprecated since 2017).
The media type comes from the JSON `mediaType` field, or from the HTTP Content-Type
when the JSON lacks it (older OCI documents), or from the document's shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from rootless.errors import ManifestError, UsageError
from rootless.image.types import (
    CONFIG_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
    Descriptor,
    HistoryEntry,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_digest,
)

JSONObject = Mapping[str, object]

# uname -m / GOARCH aliases -> (OCI architecture, implied variant)
_ARCH_ALIASES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "arm": ("arm", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "ppc64": ("ppc64", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "loongarch64": ("loong64", ""),
    "loong64": ("loong64", ""),
    "mips64": ("mips64", ""),
    "mips64le": ("mips64le", ""),
}
# The variant an entry without one is assumed to have.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
# Variants a host of a given variant can also run, best first.
_COMPATIBLE_VARIANTS = {
    ("arm", "v8"): ("v8", "v7", "v6", "v5"),
    ("arm", "v7"): ("v7", "v6", "v5"),
    ("arm", "v6"): ("v6", "v5"),
    ("amd64", "v4"): ("v4", "v3", "v2", "v1"),
    ("amd64", "v3"): ("v3", "v2", "v1"),
    ("amd64", "v2"): ("v2", "v1"),
}


# ---------------------------------------------------------------- JSON helpers


def _err(what: str, why: str) -> ManifestError:
    return ManifestError(f"invalid {what}: {why}")


def _loads(data: bytes, what: str) -> JSONObject:
    try:
        text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads(bytes)
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _err(what, f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _err(what, "not a JSON object")
    # a \uD800-\uDFFF escape, or a surrogate sent as bytes (UTF-8-encoded, UTF-16)
    if "\\ud" in text.lower() or _raw_surrogate(text):
        cleaned: JSONObject = _no_lone_surrogates(value)
        return cleaned
    return value


def _raw_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    import re  # rare: only non-ASCII documents get here

    return re.search("[\ud800-\udfff]", text) is not None


def _no_lone_surrogates(value: object) -> Any:
    """A lone UTF-16 surrogate escape ("\\ud800") decodes to a str no codec can
    encode (an environment variable, a label, a history line would crash whoever
    prints or execs it): replace it with U+FFFD, as Go's encoding/json does."""
    if isinstance(value, str):
        import re  # rare: only documents with such escapes get here

        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_no_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_no_lone_surrogates(k): _no_lone_surrogates(v) for k, v in value.items()}
    return value


def _str(obj: JSONObject, key: str, what: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise _err(what, f"missing {key!r}")
        return ""
    if not isinstance(value, str):
        raise _err(what, f"{key!r} is not a string")
    return value


def _int(obj: JSONObject, key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _err(what, f"{key!r} is missing or not a non-negative integer")
    return value


def _obj(obj: JSONObject, key: str, what: str) -> JSONObject | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _err(what, f"{key!r} is not an object")
    return value


def _list(obj: JSONObject, key: str, what: str) -> list[object]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _err(what, f"{key!r} is not a list")
    return value


def _strings(obj: JSONObject, key: str, what: str) -> tuple[str, ...]:
    items = _list(obj, key, what)
    if not all(isinstance(item, str) for item in items):
        raise _err(what, f"{key!r} is not a list of strings")
    return tuple(str(item) for item in items)


def _str_map(obj: JSONObject, key: str, what: str) -> Mapping[str, str]:
    value = _obj(obj, key, what)
    if not value:
        return MappingProxyType({})
    if not all(isinstance(v, str) for v in value.values()):
        raise _err(what, f"{key!r} values must be strings")
    return MappingProxyType({k: str(v) for k, v in value.items()})


# ---------------------------------------------------------------- descriptors


def _platform(obj: JSONObject | None, what: str) -> Platform | None:
    if obj is None:
        return None
    return Platform(
        os=_str(obj, "os", what),
        architecture=_str(obj, "architecture", what),
        variant=_str(obj, "variant", what),
        os_version=_str(obj, "os.version", what),
        os_features=_strings(obj, "os.features", what),
    )


def parse_descriptor(obj: object, what: str = "descriptor") -> Descriptor:
    """Build a Descriptor from its JSON object, checking digest and size."""
    if not isinstance(obj, dict):
        raise _err(what, "descriptor is not an object")
    digest = _str(obj, "digest", what, required=True)
    if not is_digest(digest):
        raise _err(what, f"bad digest {digest!r}")
    return Descriptor(
        media_type=_str(obj, "mediaType", what),
        digest=digest,
        size=_int(obj, "size", what),
        urls=_strings(obj, "urls", what),
        annotations=_str_map(obj, "annotations", what),
        platform=_platform(_obj(obj, "platform", what), what),
        artifact_type=_str(obj, "artifactType", what),
    )


def descriptor_to_json(desc: Descriptor) -> dict[str, object]:
    """The OCI JSON form of a descriptor (for manifests we write)."""
    out: dict[str, object] = {"mediaType": desc.media_type, "digest": desc.digest}
    out["size"] = desc.size
    if desc.urls:
        out["urls"] = list(desc.urls)
    if desc.annotations:
        out["annotations"] = dict(desc.annotations)
    if desc.artifact_type:
        out["artifactType"] = desc.artifact_type
    if desc.platform is not None:
        out["platform"] = _platform_to_json(desc.platform)
    return out


def _platform_to_json(p: Platform) -> dict[str, object]:
    out: dict[str, object] = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    if p.os_version:
        out["os.version"] = p.os_version
    if p.os_features:
        out["os.features"] = list(p.os_features)
    return out


# ---------------------------------------------------------------- manifests


def _detect_type(obj: JSONObject, content_type: str | None) -> str:
    media_type = _str(obj, "mediaType", "manifest")
    if media_type:
        return media_type
    if obj.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if content_type:
        base = content_type.split(";", 1)[0].strip()
        if base and base not in ("application/json", "text/plain"):
            return base
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj or "layers" in obj:
        return OCI_MANIFEST
    return ""


def _refuse_schema1(context: str) -> ManifestError:
    return ManifestError(
        f"{context}: uses Docker image manifest schema 1, which is no longer supported",
        hint="ask the publisher to push the image again with a current docker or buildah",
    )


def parse_manifest(
    data: bytes, content_type: str | None = None, *, context: str = "manifest"
) -> Manifest | Index:
    """Parse manifest or index bytes into a Manifest or an Index.

    `content_type` is the HTTP Content-Type, used when the JSON lacks `mediaType`.
    `context` names what is being parsed in error messages (e.g. the reference).
    """
    obj = _loads(data, context)
    media_type = _detect_type(obj, content_type)
    if media_type in SCHEMA1_TYPES or obj.get("schemaVersion") == 1:
        raise _refuse_schema1(context)
    if obj.get("schemaVersion") != 2:
        raise _err(context, f"schemaVersion is {obj.get('schemaVersion')!r}, expected 2")
    if media_type in INDEX_TYPES:
        return _parse_index(obj, media_type, context)
    if media_type in MANIFEST_TYPES:
        return _parse_image_manifest(obj, media_type, context)
    raise ManifestError(
        f"{context}: unsupported manifest media type {media_type or '(none)'!r}",
        hint="this may be an artifact, not a container image",
    )


def _parse_image_manifest(obj: JSONObject, media_type: str, what: str) -> Manifest:
    config_obj = obj.get("config")
    if config_obj is None:
        raise _err(what, "missing 'config'")
    config = parse_descriptor(config_obj, what)
    if media_type == DOCKER_MANIFEST and config.media_type not in CONFIG_TYPES:
        raise _err(what, f"config media type {config.media_type!r} is not an image config")
    layers = tuple(parse_descriptor(item, what) for item in _list(obj, "layers", what))
    subject_obj = obj.get("subject")
    return Manifest(
        media_type=media_type,
        config=config,
        layers=layers,
        schema_version=2,
        annotations=_str_map(obj, "annotations", what),
        subject=parse_descriptor(subject_obj, what) if subject_obj is not None else None,
        artifact_type=_str(obj, "artifactType", what),
    )


def _parse_index(obj: JSONObject, media_type: str, what: str) -> Index:
    if "manifests" not in obj:
        raise _err(what, "missing 'manifests'")
    manifests = tuple(parse_descriptor(item, what) for item in _list(obj, "manifests", what))
    return Index(
        media_type=media_type,
        manifests=manifests,
        schema_version=2,
        annotations=_str_map(obj, "annotations", what),
    )


def manifest_to_json(manifest: Manifest | Index) -> bytes:
    """Serialise a Manifest or Index (compact JSON; its digest is of these bytes)."""
    out: dict[str, object] = {"schemaVersion": 2, "mediaType": manifest.media_type}
    if isinstance(manifest, Index):
        out["manifests"] = [descriptor_to_json(d) for d in manifest.manifests]
    else:
        if manifest.artifact_type:
            out["artifactType"] = manifest.artifact_type
        out["config"] = descriptor_to_json(manifest.config)
        out["layers"] = [descriptor_to_json(d) for d in manifest.layers]
        if manifest.subject is not None:
            out["subject"] = descriptor_to_json(manifest.subject)
    if manifest.annotations:
        out["annotations"] = dict(manifest.annotations)
    return json.dumps(out, separators=(",", ":")).encode()


# ---------------------------------------------------------------- image config


def _history(obj: JSONObject, what: str) -> tuple[HistoryEntry, ...]:
    entries = []
    for item in _list(obj, "history", what):
        if not isinstance(item, dict):
            raise _err(what, "history entry is not an object")
        entries.append(
            HistoryEntry(
                created=_str(item, "created", what),
                created_by=_str(item, "created_by", what),
                author=_str(item, "author", what),
                comment=_str(item, "comment", what),
                empty_layer=bool(item.get("empty_layer", False)),
            )
        )
    return tuple(entries)


def _diff_ids(rootfs: JSONObject, what: str) -> tuple[str, ...]:
    """rootfs.diff_ids, each a well-formed digest: they name store paths."""
    diff_ids = _strings(rootfs, "diff_ids", what)
    for diff_id in diff_ids:
        if not is_digest(diff_id):
            raise _err(what, f"bad diff_id {diff_id[:80]!r}")
    return diff_ids


def _optional_argv(obj: JSONObject, key: str, what: str) -> tuple[str, ...] | None:
    if obj.get(key) is None:
        return None
    return _strings(obj, key, what)


def parse_image_config(data: bytes, *, context: str = "image config") -> ImageConfig:
    """Parse an OCI / Docker image config blob."""
    obj = _loads(data, context)
    run = _obj(obj, "config", context) or {}
    rootfs = _obj(obj, "rootfs", context) or {}
    if rootfs and _str(rootfs, "type", context) not in ("layers", ""):
        raise _err(context, f"rootfs type {rootfs.get('type')!r} is not 'layers'")
    return ImageConfig(
        architecture=_str(obj, "architecture", context),
        os=_str(obj, "os", context),
        variant=_str(obj, "variant", context),
        os_version=_str(obj, "os.version", context),
        diff_ids=_diff_ids(rootfs, context),
        created=_str(obj, "created", context),
        author=_str(obj, "author", context),
        user=_str(run, "User", context),
        env=_strings(run, "Env", context),
        entrypoint=_optional_argv(run, "Entrypoint", context),
        cmd=_optional_argv(run, "Cmd", context),
        working_dir=_str(run, "WorkingDir", context),
        exposed_ports=tuple(sorted((_obj(run, "ExposedPorts", context) or {}).keys())),
        volumes=tuple(sorted((_obj(run, "Volumes", context) or {}).keys())),
        labels=_str_map(run, "Labels", context),
        stop_signal=_str(run, "StopSignal", context),
        history=_history(obj, context),
        raw=dict(obj),
    )


# ---------------------------------------------------------------- platforms


def normalize_platform(p: Platform) -> Platform:
    """Canonical names: x86_64 -> amd64, aarch64 -> arm64, armhf -> arm/v7, lower case."""
    os_name = p.os.lower()
    arch, implied = _ARCH_ALIASES.get(p.architecture.lower(), (p.architecture.lower(), ""))
    variant = p.variant.lower() or implied
    if arch == "arm64" and variant in ("8", "v8", ""):
        variant = "v8" if p.variant else ""
    elif arch == "arm" and variant.isdigit():
        variant = "v" + variant
    return replace(p, os=os_name, architecture=arch, variant=variant)


def _platform_part(part: str) -> bool:
    """A non-empty os, architecture or variant name: printable, no blanks."""
    return bool(part) and part.isprintable() and not any(c.isspace() for c in part)


def parse_platform(text: str) -> Platform:
    """Parse `--platform os/arch[/variant]` (or just `arch`, meaning linux/arch)."""
    parts = text.strip().split("/")
    if len(parts) == 1 and parts[0]:
        parts = ["linux", parts[0]]
    if not 2 <= len(parts) <= 3 or not all(_platform_part(part) for part in parts):
        raise UsageError(
            f"invalid platform {text!r}",
            hint="use os/arch[/variant], for example linux/amd64 or linux/arm/v7",
        )
    variant = parts[2] if len(parts) == 3 else ""
    return normalize_platform(Platform(parts[0], parts[1], variant))


def host_platform(machine: str | None = None) -> Platform:
    """The platform this host runs natively, from `uname -m` (or `machine`)."""
    machine = machine if machine is not None else os.uname().machine
    arch, variant = _ARCH_ALIASES.get(machine.lower(), (machine.lower(), ""))
    if arch == "arm64":
        variant = "v8"
    return Platform("linux", arch, variant)


def _variant_of(p: Platform) -> str:
    return p.variant or _DEFAULT_VARIANT.get(p.architecture, "")


def _acceptable_variants(want: Platform) -> Sequence[str]:
    variant = _variant_of(want)
    return _COMPATIBLE_VARIANTS.get((want.architecture, variant), (variant,))


def _candidates(index: Index) -> list[tuple[Platform, Descriptor]]:
    out = []
    for desc in index.manifests:
        if desc.platform is None or desc.media_type not in MANIFEST_TYPES | {""}:
            continue
        out.append((normalize_platform(desc.platform), desc))
    return out


def match_platform(index: Index, want: Platform) -> Descriptor | None:
    """The best manifest of `index` for `want`, or None.

    OS and architecture must match; the variant must be one the wanted variant can
    run (an arm/v7 host accepts v7, then v6, then v5). An entry without a variant
    counts as its architecture's default (arm64 -> v8, arm -> v7, amd64 -> v1).
    """
    want = normalize_platform(want)
    same = [
        (p, d)
        for p, d in _candidates(index)
        if p.os == want.os and p.architecture == want.architecture
    ]
    for variant in _acceptable_variants(want):
        for p, desc in same:
            if _variant_of(p) == variant:
                return desc
    if not want.variant and same:
        return same[0][1]
    return None


def available_platforms(index: Index) -> list[str]:
    """`os/arch[/variant]` of each runnable entry (skipping attestations), sorted."""
    names = {str(p) for p, _ in _candidates(index) if p.os != "unknown"}
    return sorted(names)


def select_platform(index: Index, want: Platform, *, context: str = "image") -> Descriptor:
    """Like `match_platform`, but raise ManifestError listing what is available."""
    desc = match_platform(index, want)
    if desc is not None:
        return desc
    available = available_platforms(index)
    listing = ", ".join(available) if available else "none"
    raise ManifestError(
        f"{context}: no image for platform {want}; available: {listing}",
        hint="pass --platform with one of the available platforms" if available else None,
    )


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def manifest_media_types(kinds: Iterable[str] = ("oci", "docker")) -> tuple[str, ...]:
    """Accept-header media types for the given families (index types first)."""
    table = {
        "oci": (OCI_INDEX, OCI_MANIFEST),
        "docker": (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST),
    }
    indexes = [table[k][0] for k in kinds]
    manifests = [table[k][1] for k in kinds]
    return tuple(indexes + manifests)
