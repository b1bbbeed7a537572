"""Images: references, manifests, and the OCI distribution registry client.

Public API (see docs/registry.md), imported lazily so that `import rootless.image.types`
(used by the runtime) does not pull in `http.client`/`ssl`:

- `Reference.parse(text)` — docker-normalised image references;
- `parse_manifest`, `parse_image_config`, `select_platform`, `parse_platform`,
  `host_platform` — manifests, indexes and platform choice;
- `RegistryClient` — pull and push primitives against one registry;
- `CredentialStore`, `store_login`, `remove_login` — credentials;
- `InsecurePolicy` — which registries may skip TLS verification.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rootless.image.auth import Credentials, CredentialStore, remove_login, store_login
    from rootless.image.insecure import InsecurePolicy
    from rootless.image.manifest import (
        host_platform,
        parse_image_config,
        parse_manifest,
        parse_platform,
        select_platform,
    )
    from rootless.image.reference import Reference
    from rootless.image.registry import BlobReader, FetchedManifest, RegistryClient
    from rootless.image.types import Descriptor, ImageConfig, Index, Manifest, Platform

_EXPORTS = {
    "BlobReader": "registry",
    "CredentialStore": "auth",
    "Credentials": "auth",
    "Descriptor": "types",
    "FetchedManifest": "registry",
    "ImageConfig": "types",
    "Index": "types",
    "InsecurePolicy": "insecure",
    "Manifest": "types",
    "Platform": "types",
    "Reference": "reference",
    "RegistryClient": "registry",
    "host_platform": "manifest",
    "parse_image_config": "manifest",
    "parse_manifest": "manifest",
    "parse_platform": "manifest",
    "remove_login": "auth",
    "select_platform": "manifest",
    "store_login": "auth",
}

__all__ = [
    "BlobReader",
    "CredentialStore",
    "Credentials",
    "Descriptor",
    "FetchedManifest",
    "ImageConfig",
    "Index",
    "InsecurePolicy",
    "Manifest",
    "Platform",
    "Reference",
    "RegistryClient",
    "host_platform",
    "parse_image_config",
    "parse_manifest",
    "parse_platform",
    "remove_login",
    "select_platform",
    "store_login",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rootless.image' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rootless.image.{module}"), name)
