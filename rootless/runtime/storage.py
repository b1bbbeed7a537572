"""Which copy-on-write root a container gets: the storage driver.

  overlay         kernel overlayfs mounted inside the container's user namespace
                  (userxattr; Linux >= 5.11 on a filesystem with user xattrs). Fastest.
  fuse-overlayfs  the same layers through fuse-overlayfs, started inside the
                  container's namespaces (needs /dev/fuse). The fallback.
  vfs             a private, flattened copy of the image per container. Slow to create,
                  works everywhere.

The automatic choice is probed once per store and kernel and cached in
<root>/storage-driver; `--storage-driver` or $ROOTLESS_STORAGE_DRIVER override it.
"""

from __future__ import annotations

import os

from rootless.errors import UnsupportedHostError, UsageError

DRIVERS = ("overlay", "fuse-overlayfs", "vfs")
CACHE = "storage-driver"  # "<kernel release> <driver>"


def fuse_overlayfs_path() -> str | None:
    import shutil

    path = shutil.which("fuse-overlayfs") or shutil.which("fuse-overlayfs", path="/usr/bin:/bin")
    if path is None or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return None
    return path


def probe_overlay(root: str) -> bool:
    import shutil
    import tempfile

    from rootless.native import probe

    base = os.path.join(root, "tmp")
    os.makedirs(base, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="probe-", dir=base)
    try:
        dirs = [os.path.join(tmp, d) for d in ("lower", "upper", "work", "merged")]
        for d in dirs:
            os.mkdir(d)
        return probe.overlay(dirs[0], dirs[1], dirs[2], dirs[3], extra="userxattr") is None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _validate(driver: str) -> str:
    if driver not in DRIVERS:
        raise UsageError(f"unknown storage driver {driver!r}: choose overlay, fuse-overlayfs or vfs")
    if driver == "fuse-overlayfs" and fuse_overlayfs_path() is None:
        raise UnsupportedHostError("fuse-overlayfs is not usable here (not installed, or /dev/fuse not accessible)",
                                   hint="apt install fuse-overlayfs, and make /dev/fuse mode 0666")
    return driver


def choose(root: str, requested: str | None = None) -> str:
    """The driver for new containers in the store at `root`."""
    requested = requested or os.environ.get("ROOTLESS_STORAGE_DRIVER") or None
    if requested:
        return _validate(requested)
    kernel = os.uname().release
    path = os.path.join(root, CACHE)
    try:
        with open(path, encoding="utf-8") as f:
            cached_kernel, cached_driver = f.read().split()
        if cached_kernel == kernel and cached_driver in DRIVERS:
            if cached_driver != "fuse-overlayfs" or fuse_overlayfs_path():
                return cached_driver
    except (OSError, ValueError):
        pass
    if probe_overlay(root):
        driver = "overlay"
    elif fuse_overlayfs_path():
        driver = "fuse-overlayfs"
    else:
        driver = "vfs"
    try:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{kernel} {driver}\n")
        os.rename(tmp, path)
    except OSError:
        pass
    return driver
