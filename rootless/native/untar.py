"""Unpack a layer tar stream into a directory with the C unpacker (`rl_untar`).

`untar_fd` reads a tar stream from a file descriptor (a pipe is fine: nothing
seeks). `untar_stream` takes any iterable of byte chunks (or a binary file
object): a writer thread feeds a pipe while C unpacks from the other end, so
decompression and hashing in Python (which release the GIL) overlap the
unpacking in C (cffi releases the GIL around the call).

Flags (see csrc/rl_untar.h):
  chown          chown to the archive ids, mapped through `uids`/`gids` when given
  override_stat  keep files owned by the caller and record "uid:gid:0MODE:TYPE" in
                 user.containers.override_stat (fuse-overlayfs, containers/storage)
  overlay        whiteouts in overlay format (0:0 char devices, opaque xattr), else
                 whiteouts are applied by deletion (flattening into one directory)
  userxattr      opaque marker as user.overlay.opaque (else trusted.overlay.opaque)
  no_devices     refuse device nodes (counted in `devices_skipped`)

Limits (0: none): `max_file_size` caps the apparent size of one regular file
(holes of a sparse file count), `max_total_size` the apparent size of all of them
together; a member over a limit fails the unpack with EFBIG (decompression bombs).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rootless.native import ffi, lib, raise_native_error

IdMap = list[tuple[int, int, int]]
"""(inside, outside, count) ranges, as in /proc/<pid>/uid_map."""

CHUNK = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@dataclass(frozen=True)
class UntarStats:
    """What one unpack did (fields of `struct rl_untar_stats`)."""

    entries: int
    bytes: int
    whiteouts: int
    skipped: int
    devices_skipped: int
    xattrs_dropped: int
    hardlinks: int
    sparse_files: int

    @classmethod
    def from_c(cls, stats: object) -> UntarStats:
        """From a filled `struct rl_untar_stats *`."""
        return cls(**{f: int(getattr(stats, f)) for f in cls.__dataclass_fields__})


def _flags(
    *, chown: bool, override_stat: bool, overlay: bool, userxattr: bool, no_devices: bool
) -> int:
    if chown and override_stat:
        raise ValueError("chown and override_stat exclude each other")
    flags = 0
    if chown:
        flags |= int(lib.RL_UNTAR_CHOWN)
    if override_stat:
        flags |= int(lib.RL_UNTAR_OVERRIDE_STAT)
    if overlay:
        flags |= int(lib.RL_UNTAR_OVERLAY)
    if userxattr:
        flags |= int(lib.RL_UNTAR_USERXATTR)
    if no_devices:
        flags |= int(lib.RL_UNTAR_NO_DEVICES)
    return flags


def _idmap(ranges: IdMap | None) -> tuple[object, int]:
    if not ranges:
        return ffi.NULL, 0
    arr = ffi.new("struct rl_idmap[]", len(ranges))
    for i, (inside, outside, count) in enumerate(ranges):
        if min(inside, outside, count) < 0 or max(inside, outside, count) > 0xFFFFFFFF:
            raise ValueError(f"id map range out of bounds: {(inside, outside, count)}")
        arr[i].inside = inside
        arr[i].outside = outside
        arr[i].count = count
    return arr, len(ranges)


def untar_fd(
    fd: int,
    dest: str | os.PathLike[str],
    *,
    chown: bool = False,
    override_stat: bool = False,
    overlay: bool = False,
    userxattr: bool = False,
    no_devices: bool = False,
    uids: IdMap | None = None,
    gids: IdMap | None = None,
    max_file_size: int = 0,
    max_total_size: int = 0,
) -> UntarStats:
    """Unpack the tar stream readable from `fd` into the existing directory `dest`.

    Reads `fd` to EOF. Raises `rootless.native.NativeError` (an OSError with the
    errno) when the archive is bad or the filesystem refuses; what was created so
    far stays, so unpack into a staging directory.
    """
    flags = _flags(
        chown=chown,
        override_stat=override_stat,
        overlay=overlay,
        userxattr=userxattr,
        no_devices=no_devices,
    )
    uid_arr, n_uids = _idmap(uids)
    gid_arr, n_gids = _idmap(gids)
    opts = ffi.new("struct rl_untar_opts *")
    opts.flags = flags
    opts.uids = uid_arr
    opts.n_uids = n_uids
    opts.gids = gid_arr
    opts.n_gids = n_gids
    opts.max_file_size = max_file_size
    opts.max_total_size = max_total_size
    stats = ffi.new("struct rl_untar_stats *")
    err = ffi.new("struct rl_error *")
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rc = lib.rl_untar(fd, root, opts, stats, err)
    finally:
        os.close(root)
    if rc < 0:
        raise_native_error(err)
    return UntarStats.from_c(stats)


def _chunks(source: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(CHUNK):
            yield chunk
    else:
        yield from source


class _Feeder(threading.Thread):
    """Writes every chunk of `source` into the pipe's write end, then closes it."""

    def __init__(self, source: Iterable[bytes] | BinaryIO, wfd: int) -> None:
        super().__init__(name="rootless-untar-feeder", daemon=True)
        self.source = source
        self.wfd = wfd
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in _chunks(self.source):
                view = memoryview(chunk)
                while view:
                    n = os.write(self.wfd, view)
                    view = view[n:]
        except BrokenPipeError:
            pass  # the reader stopped (it failed); its error is the one to report
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
        finally:
            os.close(self.wfd)


def untar_stream(
    source: Iterable[bytes] | BinaryIO,
    dest: str | os.PathLike[str],
    *,
    chown: bool = False,
    override_stat: bool = False,
    overlay: bool = False,
    userxattr: bool = False,
    no_devices: bool = False,
    uids: IdMap | None = None,
    gids: IdMap | None = None,
    max_file_size: int = 0,
    max_total_size: int = 0,
) -> UntarStats:
    """Unpack a tar stream given as byte chunks (or a binary file object).

    The whole source is consumed when the archive is good (so a hashing wrapper
    sees every byte). An exception raised by the source itself (a decompression
    or digest error) is re-raised here in preference to the unpacker's error.
    """
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(wfd, _F_SETPIPE_SZ, CHUNK)
    feeder = _Feeder(source, wfd)
    feeder.start()
    try:
        stats = untar_fd(
            rfd,
            dest,
            chown=chown,
            override_stat=override_stat,
            overlay=overlay,
            userxattr=userxattr,
            no_devices=no_devices,
            uids=uids,
            gids=gids,
            max_file_size=max_file_size,
            max_total_size=max_total_size,
        )
    except OSError as exc:
        os.close(rfd)
        feeder.join()
        if feeder.error is not None:
            raise feeder.error from exc
        raise
    os.close(rfd)
    feeder.join()
    if feeder.error is not None:
        raise feeder.error
    return stats
