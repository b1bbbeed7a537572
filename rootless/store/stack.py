"""The user's store stacked on shared, read-only image stores.

Blobs and layers are content-addressed, so reading one from whichever store has
it is always right: `StackedBlobStore` and `StackedLayerStore` look in the
user's own store first, then in each shared store, in order. Everything that
writes or deletes stays in the user's own store: new blobs (`put`, `writer`),
unpacked layers, deletions, sweeps and GC listings. A shared store is never
written and never locked: its index.json is read without a lock (it is replaced
atomically), exactly as any reader of the user's own store does.

A layer found in a shared store keeps its place there: its `LayerInfo.link` is
the absolute path of the shared store's short link, so `os.path.join(layers_dir,
"l", info.link)` (the overlay lowerdir= idiom) names it from any store.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from rootless.errors import StoreError
from rootless.paths import StorePaths
from rootless.store.blobs import BlobStore, BlobWriter, digest_hex
from rootless.store.layers import LayerInfo, LayerStore
from rootless.store.ownership import Ownership

READ_ONLY = "read-only"  # the Ownership mode of a shared store: it never unpacks


class ReadOnlyStoreError(StoreError):
    """Something tried to change an image that lives in a shared, read-only store."""


class StackedBlobStore(BlobStore):
    """The user's blobs, falling back to the shared stores' for reading."""

    def __init__(self, paths: StorePaths, lower: Sequence[BlobStore]) -> None:
        super().__init__(paths)
        self.own = BlobStore(paths)
        self.lower = list(lower)

    def locate(self, digest: str) -> str | None:
        """The path of the blob in the first store that has it."""
        for store in (self.own, *self.lower):
            path = store.path(digest)
            if os.path.exists(path):
                return path
        return None

    def path(self, digest: str) -> str:
        return self.locate(digest) or self.own.path(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        for store in (self.own, *self.lower):
            if store.has(digest, size):
                return True
        return False

    def has_own(self, digest: str, size: int | None = None) -> bool:
        return self.own.has(digest, size)

    def put(self, data: bytes, digest: str | None = None) -> str:
        # Always into the own store: whatever the own index names (manifests,
        # configs) must not vanish with a shared store.
        return self.own.put(data, digest)

    def writer(self, digest: str, size: int | None, *, verify: bool = True) -> BlobWriter:
        return self.own.writer(digest, size, verify=verify)

    def delete(self, digest: str) -> int:
        return self.own.delete(digest)


class StackedLayerStore(LayerStore):
    """The user's unpacked layers, falling back to the shared stores' for reading."""

    def __init__(self, paths: StorePaths, ownership: Ownership, lower: Sequence[LayerStore]) -> None:
        super().__init__(paths, ownership)
        self.lower = list(lower)

    def own_info(self, diff_id: str) -> LayerInfo | None:
        return super().info(diff_id)

    def locate(self, diff_id: str) -> tuple[LayerStore, LayerInfo] | None:
        """The store holding a complete copy of the layer (the own one first) and its info."""
        info = super().info(diff_id)
        if info is not None:
            return self, info
        for store in self.lower:
            info = store.info(diff_id)
            if info is not None:
                return store, info
        return None

    def info(self, diff_id: str) -> LayerInfo | None:
        found = self.locate(diff_id)
        if found is None:
            return None
        store, info = found
        if store is self:
            return info
        return dataclasses.replace(info, link=os.path.join(store.paths.layer_links, info.link))

    def diff_dir(self, diff_id: str) -> str:
        found = self.locate(diff_id)
        if found is None or found[0] is self:
            return super().diff_dir(diff_id)
        return found[0].diff_dir(diff_id)

    def shared_root(self, diff_id: str) -> str | None:
        """The root of the shared store the layer is used from (None: the own store)."""
        found = self.locate(diff_id)
        if found is None or found[0] is self:
            return None
        return found[0].paths.root


def lower_link(layers: LayerStore, diff_id: str) -> str:
    """The layer's lowerdir= entry relative to the own store's `layers/`:
    `l/<short>`, or an absolute path into a shared store."""
    info = layers.info(diff_id)
    if info is None:
        raise StoreError(f"layer {digest_hex(diff_id)[:12]} is missing")
    return os.path.join("l", info.link)


def open_shared(roots: Sequence[str], own_root: str) -> list[tuple[str, StorePaths]]:
    """The usable shared stores among `roots` (never the own store itself); a
    missing or unreadable one is skipped with a warning, not an error, so that
    one unmounted filesystem does not stop every command."""
    from rootless import log
    from rootless.store.version import STORE_VERSION, read_version

    own = os.path.realpath(own_root)
    out: list[tuple[str, StorePaths]] = []
    seen = {own}
    for root in roots:
        real = os.path.realpath(root)
        if real in seen:
            continue
        seen.add(real)
        paths = StorePaths(root)
        if not os.path.isfile(paths.index_json):
            log.warning(f"additional image store {root} is not an image store (no index.json): skipped")
            continue
        try:
            version = read_version(paths)
        except StoreError as exc:
            log.warning(f"additional image store {root}: {exc.message}: skipped")
            continue
        if version not in (None, STORE_VERSION):
            log.warning(f"additional image store {root} has format version {version}: skipped")
            continue
        out.append((root, paths))
    return out
