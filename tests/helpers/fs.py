"""Reading what an unpack left on disk, for the native and integration tests."""

from __future__ import annotations

import errno
import os


def xattr(path: str | os.PathLike[str], name: str) -> bytes | None:
    """The extended attribute `name` of `path` itself (never followed), or None
    when it is not set or the filesystem has none."""
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
