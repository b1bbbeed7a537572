"""Store jobs in a forked child that enters a new user namespace (csrc/rl_job.c).

A user with subordinate id ranges unpacks layers with the container's ids and
deletes such trees from inside a user namespace holding the full id map:

    start the child (it unshares CLONE_NEWUSER and waits)
    -> `write_maps(pid)` (the caller's newuidmap/newgidmap step)
    -> finish: the child runs the job, reports stats or an error, exits.

`rmtree(path)` is the same safe recursive delete run in this process (for trees
the caller owns).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterable
from typing import BinaryIO

from rootless.native import ffi, lib, raise_native_error
from rootless.native.untar import _F_SETPIPE_SZ, CHUNK, IdMap, UntarStats, _Feeder, _flags, _idmap

WriteMaps = Callable[[int], None]


def _start(job: object) -> tuple[int, int]:
    pid = ffi.new("int *")
    sync = ffi.new("int *")
    err = ffi.new("struct rl_error *")
    if lib.rl_job_start(job, pid, sync, err) < 0:
        raise_native_error(err)
    return int(pid[0]), int(sync[0])


def _finish(pid: int, sync: int) -> UntarStats:
    stats = ffi.new("struct rl_untar_stats *")
    err = ffi.new("struct rl_error *")
    if lib.rl_job_finish(pid, sync, stats, err) < 0:
        raise_native_error(err)
    return UntarStats.from_c(stats)


def _run(
    job: object, write_maps: WriteMaps | None, close_after_start: list[int]
) -> tuple[int, int]:
    """Start the child, close the parent's copies of its fds, write its maps."""
    try:
        pid, sync = _start(job)
    finally:
        for fd in close_after_start:
            os.close(fd)
    if write_maps is not None:
        try:
            write_maps(pid)
        except BaseException:
            lib.rl_job_abort(pid, sync)
            raise
    return pid, sync


def untar_in_userns(
    source: Iterable[bytes] | BinaryIO,
    dest: str,
    write_maps: WriteMaps | None,
    *,
    overlay: bool = True,
    userxattr: bool = True,
    no_devices: bool = False,
    uids: IdMap | None = None,
    gids: IdMap | None = None,
    max_file_size: int = 0,
    max_total_size: int = 0,
) -> UntarStats:
    """Unpack a tar stream with CHOWN in a child inside a new user namespace whose
    maps `write_maps(pid)` writes (None: no new namespace, for tests)."""
    flags = _flags(
        chown=True, override_stat=False, overlay=overlay, userxattr=userxattr, no_devices=no_devices
    )
    uid_arr, n_uids = _idmap(uids)
    gid_arr, n_gids = _idmap(gids)
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(wfd, _F_SETPIPE_SZ, CHUNK)
    try:
        dirfd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        os.close(rfd)
        os.close(wfd)
        raise
    job = ffi.new("struct rl_job *")
    job.kind = lib.RL_JOB_UNTAR
    job.no_userns = 1 if write_maps is None else 0
    job.tar_fd = rfd
    job.dirfd = dirfd
    job.untar.flags = flags
    job.untar.uids = uid_arr
    job.untar.n_uids = n_uids
    job.untar.gids = gid_arr
    job.untar.n_gids = n_gids
    job.untar.max_file_size = max_file_size
    job.untar.max_total_size = max_total_size
    try:
        pid, sync = _run(job, write_maps, [rfd, dirfd])
    except BaseException:
        os.close(wfd)
        raise
    feeder = _Feeder(source, wfd)
    feeder.start()
    try:
        stats = _finish(pid, sync)
    except OSError as exc:
        feeder.join()
        if feeder.error is not None:
            raise feeder.error from exc
        raise
    feeder.join()
    if feeder.error is not None:
        raise feeder.error
    return stats


def rmtree_in_userns(path: str, write_maps: WriteMaps | None) -> None:
    """Delete `path` recursively from a child in a new user namespace."""
    from rootless.native.fs import rmtree_in_userns as _rmtree_in_userns

    _rmtree_in_userns(path, write_maps)


def rmtree(path: str) -> None:
    """Delete `path` recursively in this process (see rootless.native.fs.rmtree)."""
    from rootless.native.fs import rmtree as _rmtree

    _rmtree(path)
