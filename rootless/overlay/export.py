"""Tar streams of container trees, written to a file descriptor.

`pack_upper`: an upper dir as an OCI layer (whiteouts as `.wh.<name>`, opaque
directories followed by `.wh..wh..opq`). `pack_merged`: the merged view (lower
layers + upper, whiteouts applied) as a flat rootfs, for `export`.

Entries carry what the container sees: run this in the container's user
namespace (`rootless.overlay.userns`) and `stat()` shows the container's ids.
With `override=True` (a user without subordinate ids, whose files all belong to
them) the owner and mode recorded in `user.containers.override_stat` win when
present (a mode the container changed since is kept); files without it belong to
the container's root (0:0). Hard links are detected by inode; xattrs are kept
except the storage's own (overlay, fuse-overlayfs, override_stat). Mtimes are
whole seconds (as docker writes them). PAX format, names relative, no "./".

`StreamDigest` hashes and gzips a tar stream as the parent reads it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile

from rootless.overlay.view import LayerView
from rootless.overlay.whiteout import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    is_opaque,
    is_private_xattr,
    override_disk_mode,
    read_override,
    whiteout_target,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.overlay.userns import NsChild
    from rootless.runtime.containers import Container

BUF = 1 << 20
BLOCK = 512
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class TarWriter:
    """Writes tar members to `fd` with a 1 MiB buffer (file data by sendfile)."""

    def __init__(self, fd: int, *, override: bool = False) -> None:
        self.fd = fd
        self.override = override
        self.buf = bytearray()
        self.links: dict[tuple[int, int], str] = {}
        self.entries = 0

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        view = memoryview(self.buf)
        self.buf = bytearray()
        while view:
            view = view[os.write(self.fd, view) :]

    def _put(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= BUF:
            self._flush()

    def _header(self, ti: tarfile.TarInfo) -> None:
        self._put(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self.entries += 1

    def close(self) -> None:
        self._put(b"\0" * (2 * BLOCK))
        self._flush()

    # ------------------------------------------------------------ members

    def add_marker(self, name: str, mtime: int = 0) -> None:
        """An empty regular file (a whiteout or the opaque marker)."""
        ti = tarfile.TarInfo(name)
        ti.mode, ti.mtime = 0o644, mtime
        self._header(ti)

    def add(self, name: str, dir_fd: int, entry: str, st: os.stat_result) -> None:
        """Add `entry` (below the open directory `dir_fd`) as member `name`."""
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            fd = os.open(entry, _OPEN_FLAGS | (os.O_DIRECTORY if stat.S_ISDIR(mode) else 0), dir_fd=dir_fd)
            try:
                self._add_open(name, fd, os.fstat(fd))
            finally:
                os.close(fd)
            return
        ti = self._info(name, st)
        if stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.fsdecode(os.readlink(entry, dir_fd=dir_fd))
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return  # sockets are not content
        self._header(ti)

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = int(st.st_mtime)
        return ti

    def _add_open(self, name: str, fd: int, st: os.stat_result) -> None:
        is_dir = stat.S_ISDIR(st.st_mode)
        if not is_dir and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                ti = self._info(name, st)
                ti.type, ti.linkname = tarfile.LNKTYPE, first
                self._header(ti)
                return
            self.links[key] = name
        ti = self._info(name, st)
        ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        device = self._apply_override(ti, fd, st, is_dir) if self.override else False
        self._xattrs(ti, fd)
        if is_dir or device:
            self._header(ti)
            return
        ti.size = st.st_size
        self._header(ti)
        self._data(fd, st.st_size)

    def _apply_override(self, ti: tarfile.TarInfo, fd: int, st: os.stat_result, is_dir: bool) -> bool:
        """Owner/mode from override_stat; True when the file stands for a device."""
        ov = read_override(fd)
        if ov is None:
            return False
        uid, gid, mode, kind = ov
        ti.uid, ti.gid = uid, gid
        if stat.S_IMODE(st.st_mode) == override_disk_mode(mode, is_dir):
            ti.mode = mode  # unchanged since unpacking: the recorded mode, special bits too
        if kind.startswith(("char-", "block-")) and not is_dir and st.st_size == 0:
            parts = kind.split("-")
            try:
                ti.devmajor, ti.devminor = int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                return False
            ti.type = tarfile.CHRTYPE if kind.startswith("char-") else tarfile.BLKTYPE
            return True
        if kind == "pipe" and not is_dir and st.st_size == 0:
            ti.type = tarfile.FIFOTYPE
            return True
        return False

    def _xattrs(self, ti: tarfile.TarInfo, fd: int) -> None:
        try:
            names = os.listxattr(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return
            raise
        pax: dict[str, str] = {}
        for xname in sorted(names):
            if is_private_xattr(xname):
                continue
            try:
                value = os.getxattr(fd, xname)
            except OSError:
                continue  # trusted.* and the like are not ours to read
            pax["SCHILY.xattr." + xname] = value.decode("utf-8", "surrogateescape")
        if pax:
            ti.pax_headers = pax

    def _data(self, fd: int, size: int) -> None:
        """`size` bytes of the file (zero-padded if it shrank meanwhile), block-padded."""
        self._flush()
        done = 0
        while done < size:
            try:
                n = os.sendfile(self.fd, fd, done, size - done)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                n = self._copy_read(fd, done, size - done)
            if n == 0:
                break
            done += n
        pad = (size - done) + (-size % BLOCK)
        if pad:
            self._put(b"\0" * pad)

    def _copy_read(self, fd: int, offset: int, count: int) -> int:
        data = os.pread(fd, min(count, BUF), offset)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        return len(data)


def _scan(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    with os.scandir(dir_fd) as it:
        out = [(e.name, e.stat(follow_symlinks=False)) for e in it]
    out.sort(key=lambda x: x[0])
    return out


def _open_dir(name: str, dir_fd: int | None) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def pack_upper(upper: str, out_fd: int, *, lowers_top_down: list[str],
               skip: frozenset[str] = frozenset(), override: bool = False) -> int:
    """Write the upper dir as an OCI layer tar to `out_fd`; returns the member count.
    `skip`: runtime mount points, left out when empty and absent below (see diff).
    Depth first, names sorted; one open directory fd per level."""
    view = LayerView(lowers_top_down)
    tw = TarWriter(out_fd, override=override)
    stack = [_Level("", _open_dir(upper, None))]
    try:
        while stack:
            level = stack[-1]
            if not _pack_next(tw, view, level, skip, stack):
                os.close(level.fd)
                stack.pop()
    finally:
        for level in stack:
            os.close(level.fd)
    tw.close()
    return tw.entries


class _Level:
    """A directory being packed: its fd and the entries still to do."""

    def __init__(self, rel: str, fd: int) -> None:
        self.rel = rel
        self.fd = fd
        self.todo = _scan(fd)
        self.todo.reverse()
        self.started = False


def _pack_next(tw: TarWriter, view: LayerView, level: _Level, skip: frozenset[str],
               stack: list[_Level]) -> bool:
    """Pack the next member of `level` (descending into a directory); False when done."""
    from rootless.overlay.diff import is_skipped

    rel = level.rel
    if not level.started:
        level.started = True
        if rel and (is_opaque(level.fd) or any(n == OPAQUE_MARKER for n, _ in level.todo)):
            tw.add_marker(f"{rel}/{OPAQUE_MARKER}")
    while level.todo:
        name, st = level.todo.pop()
        if name == OPAQUE_MARKER:
            continue
        child = f"{rel}/{name}" if rel else name
        target = whiteout_target(name, st)
        if target is not None:
            tw.add_marker(f"{rel}/{WHITEOUT_PREFIX}{target}" if rel else WHITEOUT_PREFIX + target,
                          int(st.st_mtime))
            continue
        if child in skip and is_skipped(child, st, skip, view):
            continue
        tw.add(child, level.fd, name, st)
        if stat.S_ISDIR(st.st_mode):
            stack.append(_Level(child, _open_dir(name, level.fd)))
            return True
    return False


def pack_merged(layers_top_down: list[str], out_fd: int, *, skip: frozenset[str] = frozenset(),
                override: bool = False) -> int:
    """Write the union of `layers_top_down` (the upper dir first) as a flat tar."""
    view = LayerView(layers_top_down)
    lower_view = LayerView(layers_top_down[1:])
    tw = TarWriter(out_fd, override=override)
    stack = [""]
    while stack:
        rel = stack.pop()
        fds: dict[str, int] = {}
        subdirs = []
        try:
            for name, (root, st) in sorted(view.listdir(rel).items()):
                child = f"{rel}/{name}" if rel else name
                if child in skip and is_skipped_merged(child, st, skip, lower_view):
                    continue
                if root not in fds:
                    fds[root] = _open_dir(os.path.join(root, rel) if rel else root, None)
                tw.add(child, fds[root], name, st)
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(child)
        finally:
            for fd in fds.values():
                os.close(fd)
        stack.extend(reversed(subdirs))
    tw.close()
    return tw.entries


def is_skipped_merged(rel: str, st: os.stat_result, skip: frozenset[str], lower: LayerView) -> bool:
    from rootless.overlay.diff import is_skipped

    return is_skipped(rel, st, skip, lower)


class StreamDigest:
    """sha256 (and size) of a stream as it passes."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def spawn_pack(c: Container, *, merged: bool) -> tuple[int, NsChild]:
    """Start packing container `c` in a namespace child: its upper dir as a layer
    (merged=False) or its whole merged view (merged=True). Returns the read end of
    the tar stream and the child (`wait()` it after reading to EOF)."""
    from rootless.overlay import userns
    from rootless.overlay.diff import container_layers, mountpoints

    upper, lowers = container_layers(c)
    skip = mountpoints(c)
    mapping = userns.caller_mapping()
    # Owners recorded in override_stat win for every user: without subordinate ids
    # that is how every owner is kept; with them, only `--fakeroot` records any.
    override = True
    have_upper = os.path.isdir(upper)
    r, w = os.pipe2(os.O_CLOEXEC)

    def work() -> None:
        os.close(r)
        if merged:
            pack_merged(([upper] if have_upper else []) + lowers, w, skip=skip, override=override)
        elif have_upper:
            pack_upper(upper, w, lowers_top_down=lowers, skip=skip, override=override)
        else:
            TarWriter(w).close()
        os.close(w)

    try:
        child = userns.spawn(work, mapping=mapping, close_in_parent=[w])
    except BaseException:
        os.close(r)
        raise
    return r, child
