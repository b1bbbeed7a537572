"""The store format version (`<root>/version`, one integer).

A store written by a newer, incompatible rootless is refused rather than
misread; an empty directory becomes a version-1 store.
"""

from __future__ import annotations

import os

from rootless.errors import StoreError
from rootless.paths import StorePaths
from rootless.store.locking import atomic_write

STORE_VERSION = 1


def read_version(paths: StorePaths) -> int | None:
    """The version recorded in the store, or None when there is none yet."""
    try:
        with open(paths.version_file, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {paths.version_file}: {exc.strerror}") from exc
    if not text.isdigit():
        raise StoreError(
            f"{paths.version_file} is corrupt ({text[:20]!r})",
            hint="it should hold one integer; restore it or use another --root",
        )
    return int(text)


def check_version(paths: StorePaths, *, create: bool) -> None:
    """Refuse an incompatible store; record the version in a new one."""
    found = read_version(paths)
    if found == STORE_VERSION:
        return
    if found is None:
        if create:
            atomic_write(paths.version_file, b"%d\n" % STORE_VERSION)
        return
    raise StoreError(
        f"the store {paths.root} has format version {found}; this rootless reads version "
        f"{STORE_VERSION}",
        hint="use the rootless that wrote it, or pass another --root",
    )


def ensure_layout(paths: StorePaths) -> None:
    """Create the store directories and the OCI layout marker."""
    for d in (
        paths.root,
        paths.blobs,
        paths.blobs_tmp,
        paths.layers,
        paths.layer_links,
        paths.locks,
    ):
        os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(paths.root)
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        # private like podman's: a root made by an earlier `run --rootfs` (through
        # makedirs of a subdirectory) may be 0755, and index.json names the images
        os.chmod(paths.root, 0o700)
    if not os.path.exists(paths.oci_layout):
        atomic_write(paths.oci_layout, b'{"imageLayoutVersion":"1.0.0"}')
    if not os.path.exists(paths.index_json):
        atomic_write(
            paths.index_json,
            b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
            b'"manifests":[]}',
        )
