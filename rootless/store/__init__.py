"""The persistent image store: content-addressed blobs, unpacked layers keyed by
diffID, and image names in an OCI layout `index.json`. See docs/storage.md.

    from rootless.store import Store
    store = Store.open(root)
    image = store.image("busybox")          # ImageRecord
    store.layer_dirs(image)                 # lower -> upper diff directories
    store.users_of(image.id)                # containers created from it

The names below are imported on first use, so that the light submodules
(`rootless.store.shared`, read on the `run` hot path) do not pull in the store.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.store.store import ImageRecord, NoSuchImageError, Store, normalize_name

__all__ = ["ImageRecord", "NoSuchImageError", "Store", "normalize_name"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from rootless.store import store

        return getattr(store, name)
    raise AttributeError(f"module 'rootless.store' has no attribute {name!r}")
