"""Whiteouts and opaque directories: every format rootless meets, in one place.

Layers and kernel-overlay upper dirs (mounted with `userxattr` in a user
namespace) use the overlay format:
  - a deleted entry is a character device 0:0 with the entry's name;
  - an opaque directory (hides everything below it) has `user.overlay.opaque=y`
    (`trusted.overlay.opaque` when root mounted without userxattr).
fuse-overlayfs may instead write `.wh.<name>` files and `user.fuseoverlayfs.opaque`.
OCI layer tars use `.wh.<name>` for a deleted entry and `.wh..wh..opq` inside an
opaque directory.
"""

from __future__ import annotations

import errno
import os
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque")
OVERRIDE_XATTR = "user.containers.override_stat"
# Metadata of the storage itself, never part of a layer's content.
PRIVATE_XATTR_PREFIXES = ("user.overlay.", "trusted.overlay.", "user.fuseoverlayfs.", OVERRIDE_XATTR)
HOST_ONLY_XATTRS = ("security.selinux",)

_NO_XATTR = (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP)


def is_whiteout_stat(st: os.stat_result) -> bool:
    """An overlay whiteout: a character device with device number 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def whiteout_target(name: str, st: os.stat_result) -> str | None:
    """The name an upper-dir entry deletes, or None when it is not a whiteout."""
    if is_whiteout_stat(st):
        return name
    if name.startswith(WHITEOUT_PREFIX) and name != OPAQUE_MARKER and stat.S_ISREG(st.st_mode):
        return name[len(WHITEOUT_PREFIX) :] or None
    return None


def is_opaque(dir_or_fd: str | int) -> bool:
    """Whether a directory (path or open fd) is marked opaque by an xattr."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(dir_or_fd, name) == b"y":
                return True
        except OSError as exc:
            if exc.errno not in _NO_XATTR:
                raise
    return False


def is_private_xattr(name: str) -> bool:
    """Xattrs that belong to the storage, not to the file (never packed)."""
    return name.startswith(PRIVATE_XATTR_PREFIXES) or name in HOST_ONLY_XATTRS


def read_override(fd: int) -> tuple[int, int, int, str] | None:
    """`user.containers.override_stat` of an open file: (uid, gid, mode, type word)."""
    try:
        raw = os.getxattr(fd, OVERRIDE_XATTR).decode("ascii", "replace")
    except OSError as exc:
        if exc.errno in _NO_XATTR or exc.errno == errno.EBADF:
            return None
        raise
    parts = raw.split(":")
    try:
        uid, gid, mode = int(parts[0]), int(parts[1]), int(parts[2], 8)
    except (IndexError, ValueError):
        return None
    return uid, gid, mode & 0o7777, parts[3] if len(parts) > 3 else "file"


def override_disk_mode(mode: int, is_dir: bool) -> int:
    """The mode an override-stat unpack gives a file on disk (see rl_untar.c
    disk_mode): the archive's permission bits plus u+rw(x), no special bits."""
    return (mode & 0o777) | (0o700 if is_dir else 0o600)
