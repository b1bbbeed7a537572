"""The persistent image store: content-addressed blobs, unpacked layers keyed by
diffID, and image names in an OCI layout `index.json`. See docs/storage.md.

    from rootless.store import Store
    store = Store.open(root)
    image = store.image("busybox")          # ImageRecord
    store.layer_dirs(image)                 # lower -> upper diff directories
    store.users_of(image.id)                # containers created from it
"""

from __future__ import annotations

from rootless.store.store import ImageRecord, NoSuchImageError, Store, normalize_name

__all__ = ["ImageRecord", "NoSuchImageError", "Store", "normalize_name"]
