"""Images: references, manifests, and the OCI distribution registry client.

Public API (see docs/registry.md):

- `Reference.parse(text)` — docker-normalised image references;
- `parse_manifest`, `parse_image_config`, `select_platform`, `parse_platform`,
  `host_platform` — manifests, indexes and platform choice;
- `RegistryClient` — pull and push primitives against one registry;
- `CredentialStore`, `store_login`, `remove_login` — credentials;
- `InsecurePolicy` — which registries may skip TLS verification.
"""

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
