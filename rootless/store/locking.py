"""File locks (flock) for the store: shared for readers and writers that only add
content, exclusive for whatever deletes it; and atomic file writes.

A lock is held on an open file description, so it is released when the process
dies (kill -9 included): a crashed pull never leaves the store locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from rootless.errors import LockTimeoutError, StoreError


class FileLock:
    """`with FileLock(path, shared=False, timeout=None, what="store"):` ...

    `timeout=None` waits forever; `timeout=0` tries once. A timeout raises
    LockTimeoutError naming `what`.
    """

    def __init__(
        self, path: str, *, shared: bool = False, timeout: float | None = None, what: str = "store"
    ) -> None:
        self.path = path
        self.shared = shared
        self.timeout = timeout
        self.what = what
        self.fd = -1

    def acquire(self) -> FileLock:
        fd = _open_lockfile(self.path)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            _flock(fd, op, self.timeout, self.what)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def try_exclusive(self) -> bool:
        """Upgrade or take the lock exclusively without waiting; True on success."""
        if self.fd < 0:
            self.fd = _open_lockfile(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.shared = False
        return True

    def downgrade(self) -> None:
        """Turn an exclusive lock into a shared one (may briefly let a writer in)."""
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.shared = True

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _open_lockfile(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open lock {path}: {exc.strerror}") from exc


def _flock(fd: int, op: int, timeout: float | None, what: str) -> None:
    if timeout is None:
        fcntl.flock(fd, op)
        return
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise LockTimeoutError(
                f"the {what} is busy (locked by another rootless command)",
                hint="wait for it to finish and retry",
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write `data` to `path` via a temporary file and rename (fsync'ed unless sync=False)."""
    tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        from rootless.store import crash

        crash.point("atomic-write")
        os.rename(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        unlink_quiet(tmp)
        raise
    if sync:
        fsync_dir(os.path.dirname(path))


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def replacing(path: str) -> Iterator[str]:
    """A temporary name beside `path` to write the whole file under (`save -o`,
    `save --format squashfs`): fsync'ed and renamed over `path` when the block ends.
    On any failure the temporary file is gone; an OSError becomes one StoreError
    line naming `path`."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        unlink_quiet(tmp)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        unlink_quiet(tmp)
        raise
