"""Light file-system helpers over the C core (no heavy imports: used on `run --rm`)."""

from __future__ import annotations

import os

from rootless.native import ffi, lib, raise_native_error


def rmtree(path: str) -> None:
    """Delete `path` recursively in this process (never following symlinks;
    unreadable or read-only directories are made 0700 first). Missing is fine."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    err = ffi.new("struct rl_error *")
    try:
        rc = lib.rl_rmtree_at(dirfd, os.fsencode(name), err)
    finally:
        os.close(dirfd)
    if rc < 0:
        raise_native_error(err)
