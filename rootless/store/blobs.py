"""Content-addressed blobs (`blobs/sha256/<hex>`): manifests, configs and
compressed layers, exactly as a registry serves them.

A blob is written to `blobs/tmp/`, hashed (or verified by the caller's
digest-checking reader) while it streams, fsync'ed, and renamed into place only
when its digest and size match, so a blob in `blobs/sha256/` is always whole.
Leftover temporary files of dead processes are swept.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from rootless.errors import DigestMismatchError, StoreError
from rootless.paths import StorePaths
from rootless.store import crash
from rootless.store.locking import fsync_dir

TMP_MAX_AGE = 24 * 3600


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest (refuses other algorithms)."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise StoreError(f"unsupported digest {digest!r}: the store keeps sha256 blobs only")
    return hexpart


class BlobWriter:
    """A blob being written: `write(chunk)`, then `commit()`; closing without
    committing removes the temporary file."""

    def __init__(self, store: BlobStore, digest: str, size: int | None, *, verify: bool) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.hex = digest_hex(digest)
        self.tmp = os.path.join(
            store.paths.blobs_tmp, f"{self.hex}.{os.getpid()}.{time.monotonic_ns()}"
        )
        self._hash = hashlib.sha256() if verify else None
        self.written = 0
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def write(self, chunk: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
        view = memoryview(chunk)
        self.written += len(view)
        while view:
            view = view[os.write(self.fd, view) :]

    def commit(self) -> str:
        """Verify, fsync and rename into place; returns the final path."""
        if self.size is not None and self.written != self.size:
            raise DigestMismatchError(
                f"blob {self.digest}: got {self.written} bytes, expected {self.size}"
            )
        if self._hash is not None and self._hash.hexdigest() != self.hex:
            raise DigestMismatchError(
                f"blob {self.digest}: content has digest sha256:{self._hash.hexdigest()}"
            )
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        final = self.store.path(self.digest)
        crash.point("blob-synced")
        os.rename(self.tmp, final)
        return final

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.unlink(self.tmp)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class BlobStore:
    """The `blobs/` directory of a store."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths

    def path(self, digest: str) -> str:
        return self.paths.blob(digest_hex(digest))

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def size(self, digest: str) -> int:
        return os.stat(self.path(digest)).st_size

    def read(self, digest: str, *, verify: bool = True) -> bytes:
        """A whole (small) blob; verified against its digest unless verify=False."""
        try:
            with open(self.path(digest), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise StoreError(
                f"blob {digest} is missing from the store",
                hint="pull the image again",
            ) from None
        if verify and hashlib.sha256(data).hexdigest() != digest_hex(digest):
            raise StoreError(
                f"blob {digest} in the store is corrupt", hint="remove the image and pull it again"
            )
        return data

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` (verified against `digest` when given); returns its digest."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and digest != actual:
            raise DigestMismatchError(f"blob {digest}: content has digest {actual}")
        if self.has(actual, len(data)):
            return actual
        with BlobWriter(self, actual, len(data), verify=False) as w:
            w.write(data)
            w.commit()
        return actual

    def writer(self, digest: str, size: int | None, *, verify: bool = True) -> BlobWriter:
        return BlobWriter(self, digest, size, verify=verify)

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed (0 when it was absent)."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        crash.point("blob-deleted")
        return size

    def digests(self) -> Iterator[str]:
        try:
            names = os.listdir(self.paths.blobs)
        except FileNotFoundError:
            return
        for name in names:
            if len(name) == 64:
                yield "sha256:" + name

    def sweep_tmp(self, *, everything: bool = False) -> int:
        """Delete temporary files of dead writers (all of them with everything=True,
        which the caller may only ask for under the exclusive store lock)."""
        removed = 0
        try:
            names = os.listdir(self.paths.blobs_tmp)
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(self.paths.blobs_tmp, name)
            if everything or _stale(name, path):
                try:
                    os.unlink(path)
                    removed += 1
                except OSError:
                    pass
        return removed

    def sync(self) -> None:
        fsync_dir(self.paths.blobs)


def _stale(name: str, path: str) -> bool:
    parts = name.split(".")
    if len(parts) >= 2 and parts[1].isdigit() and not pid_alive(int(parts[1])):
        return True
    try:
        return time.time() - os.stat(path).st_mtime > TMP_MAX_AGE
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
