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


def rmtree_in_userns(path: str, write_maps: object) -> None:
    """Delete `path` from a child in a new user namespace whose maps `write_maps(pid)`
    writes: files owned by subordinate ids can only be removed from inside it.
    (write_maps None: no new namespace, for tests.)"""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    c_name = ffi.new("char[]", os.fsencode(name))
    job = ffi.new("struct rl_job *")
    job.kind = lib.RL_JOB_RMTREE
    job.no_userns = 1 if write_maps is None else 0
    job.tar_fd = -1
    job.dirfd = dirfd
    job.name = c_name
    pid = ffi.new("int *")
    sync = ffi.new("int *")
    err = ffi.new("struct rl_error *")
    try:
        if lib.rl_job_start(job, pid, sync, err) < 0:
            raise_native_error(err)
    finally:
        os.close(dirfd)
    if write_maps is not None:
        try:
            write_maps(int(pid[0]))  # type: ignore[operator]
        except BaseException:
            lib.rl_job_abort(pid[0], sync[0])
            raise
    stats = ffi.new("struct rl_untar_stats *")
    if lib.rl_job_finish(pid[0], sync[0], stats, err) < 0:
        raise_native_error(err)
