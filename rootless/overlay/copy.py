"""`cp` between a container and the host, safe against symlinks in the container.

Everything runs in a child inside the container's user namespace
(`overlay.userns`), on a directory fd that is the container's root:

  running overlay container  join its user namespace; root = /proc/<pid>/root
                             (writes go through its live overlay: copy-up as usual)
  stopped overlay container  a private user + mount namespace mounts the container's
                             overlay on its merged/ dir (under the container lock, so
                             it cannot start meanwhile); root = merged/
  vfs / rootfs container     root = the directory

Container paths are resolved with `rl_openat_in_root` (openat2 RESOLVE_IN_ROOT):
"..", absolute names and symlink targets never leave the container's root. The
copy itself never follows a symlink: every entry is opened relative to its
parent's fd with O_NOFOLLOW, an existing entry in the way is unlinked (never
written through), and symlinks are copied as symlinks.

Docker's rules: SRC `dir/.` copies the directory's content; DST an existing
directory receives SRC inside it; DST ending in "/" must be an existing
directory; a directory never replaces a file. Files copied into the container
belong to its root (0:0), files copied out to the caller; modes and mtimes are
kept, except that files copied out lose their setuid and setgid bits (an image
must not plant set-id programs on the host).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from rootless.errors import ContainerError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from rootless.runtime.containers import Container

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR | os.O_NOFOLLOW
CHUNK = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: a path in the container (inside=True) or on the host."""

    path: str
    inside: bool


def parse_arg(arg: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` -> (container, path); a host path -> (None, path).
    Like docker, a name containing "/" before the colon is a host path."""
    head, sep, tail = arg.partition(":")
    if sep and head and "/" not in head and not arg.startswith((".", "/")):
        return head, tail
    return None, arg


# ---------------------------------------------------------------- resolution


class Root:
    """Opens paths on one side: below the container's root fd, or on the host."""

    def __init__(self, rootfd: int | None) -> None:
        self.rootfd = rootfd

    def open(self, path: str, flags: int) -> int:
        if self.rootfd is None:
            return os.open(path or "/", flags)
        from rootless.native import ffi, lib

        fd = int(lib.rl_openat_in_root(self.rootfd, os.fsencode(path or "/"), flags | os.O_CLOEXEC))
        if fd < 0:
            e = ffi.errno
            raise OSError(e, os.strerror(e), path)
        return fd


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a path; name "" for a root or a trailing "." / "/"."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/", ""
    parent, _, name = stripped.rpartition("/")
    if name == ".":
        return parent or "/", ""
    return parent or ("/" if path.startswith("/") else "."), name


class Located:
    """An entry to copy from: its parent directory fd and its name in it."""

    def __init__(self, parent_fd: int, name: str, st: os.stat_result) -> None:
        self.parent_fd = parent_fd
        self.name = name
        self.st = st

    def close(self) -> None:
        os.close(self.parent_fd)


def locate_source(root: Root, path: str) -> tuple[Located, bool]:
    """The source entry (a symlink is taken as itself unless the path ends in "/" or
    "/."); True when only the directory's content is wanted ("dir/.")."""
    contents = path.rstrip("/").endswith("/.") or path in (".", "/.")
    if path.endswith("/") or contents or _split(path)[1] == "":
        fd = root.open(path.rstrip("/").removesuffix("/.") or "/", _DIR)
        st = os.fstat(fd)
        return Located(fd, ".", st), contents or _split(path)[1] == ""
    parent, name = _split(path)
    pfd = root.open(parent, _DIR)
    try:
        st = os.lstat(name, dir_fd=pfd)
    except OSError:
        os.close(pfd)
        raise
    return Located(pfd, name, st), False


def _basename(path: str, src: Located) -> str:
    name = _split(path)[1]
    return name if name not in ("", ".") else "root"


def locate_dest(root: Root, path: str, src: Located, src_path: str,
                contents: bool) -> tuple[int, str | None]:
    """Where to write: (directory fd, name in it), or (directory fd, None) to copy a
    directory's content into that directory."""
    src_is_dir = stat.S_ISDIR(src.st.st_mode)
    try:
        fd = root.open(path, _DIR)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            if src_is_dir:
                raise ContainerError(f"cannot copy a directory to a file: {path}") from None
            if path.endswith("/"):
                raise ContainerError(f"destination {path} is not a directory") from None
            parent, name = _split(path)
            return root.open(parent, _DIR), name
        if exc.errno != errno.ENOENT:
            raise
        if path.endswith("/") and not src_is_dir:
            raise ContainerError(f"destination directory {path} does not exist") from None
        parent, name = _split(path)
        try:
            return root.open(parent, _DIR), name
        except FileNotFoundError:
            raise ContainerError(f"destination directory {parent} does not exist") from None
    if src_is_dir and contents:
        return fd, None
    return fd, _basename(src_path, src)


# ---------------------------------------------------------------- copying


def _remove(dfd: int, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ContainerError(f"cannot overwrite directory {name!r} with a non-directory")
    os.unlink(name, dir_fd=dfd)


def _copy_data(src: int, dst: int, size: int) -> None:
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, size - done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            data = os.read(src, CHUNK)
            n = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]
        if n == 0:
            break
        done += n


def _times(dfd: int, name: str, st: os.stat_result) -> None:
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)


_SET_ID = stat.S_ISUID | stat.S_ISGID


def copy_entry(sfd: int, sname: str, st: os.stat_result, dfd: int, dname: str,
               to_host: bool = False) -> None:
    """Copy `sname` (below sfd) to `dname` (below dfd); never follows a symlink.
    `to_host`: regular files lose their setuid/setgid bits."""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        try:
            os.mkdir(dname, 0o700, dir_fd=dfd)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(dname, dir_fd=dfd).st_mode):
                raise ContainerError(f"cannot overwrite non-directory {dname!r} with a directory") from None
        copy_dir_contents(sfd, sname, dfd, dname, to_host)
        os.chmod(dname, stat.S_IMODE(mode), dir_fd=dfd)
        _times(dfd, dname, st)
        return
    _remove(dfd, dname)
    if stat.S_ISREG(mode):
        src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            dst = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=dfd)
            try:
                _copy_data(src, dst, os.fstat(src).st_size)
                os.fchmod(dst, stat.S_IMODE(mode) & ~_SET_ID if to_host else stat.S_IMODE(mode))
            finally:
                os.close(dst)
        finally:
            os.close(src)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(sname, dir_fd=sfd), dname, dir_fd=dfd)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dname, stat.S_IMODE(mode), dir_fd=dfd)
    else:
        return  # devices and sockets are not copied
    _times(dfd, dname, st)


def copy_dir_contents(sfd: int, sname: str, dfd: int, dname: str, to_host: bool = False) -> None:
    src = os.open(sname, _NOFOLLOW_DIR, dir_fd=sfd) if sname != "." else os.dup(sfd)
    try:
        dst = os.open(dname, _NOFOLLOW_DIR, dir_fd=dfd) if dname != "." else os.dup(dfd)
        try:
            with os.scandir(src) as it:
                entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
            for name, st in entries:
                copy_entry(src, name, st, dst, name, to_host)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy(src_root: Root, src_path: str, dst_root: Root, dst_path: str) -> None:
    """Docker's `cp` from one side to the other (see the module doc)."""
    try:
        src, contents = locate_source(src_root, src_path)
    except FileNotFoundError:
        raise ContainerError(f"no such file or directory: {src_path}") from None
    try:
        dfd, dname = locate_dest(dst_root, dst_path, src, src_path, contents)
        to_host = dst_root.rootfd is None
        try:
            if dname is None:
                copy_dir_contents(src.parent_fd, src.name, dfd, ".", to_host)
            else:
                copy_entry(src.parent_fd, src.name, src.st, dfd, dname, to_host)
        finally:
            os.close(dfd)
    finally:
        src.close()


# ---------------------------------------------------------------- the container's root


def _overlay_data(c: Container) -> tuple[str, str]:
    layers_dir = str(c.config["layers_dir"])
    lower = ":".join(reversed([str(x) for x in c.config["lower"]]))  # type: ignore[attr-defined]
    data = f"lowerdir={lower},upperdir={c.path('upper')},workdir={c.path('work')},userxattr"
    return layers_dir, data


def in_container(c: Container, work: Callable[[int], None]) -> None:
    """Run `work(rootfd)` in a child that sees the container's root as `rootfd`."""
    from rootless.overlay import userns

    mode = str(c.config.get("rootfs_mode", "rootfs"))
    st = c.status()
    if mode in ("overlay", "fuse-overlayfs", "squashfs") and st.running:
        from rootless.runtime.execute import joinable_pid

        pid = joinable_pid(st.pid)

        def joined() -> None:
            work(os.open(f"/proc/{pid}/root", _DIR))

        userns.spawn(joined, mapping=None, join_pid=pid).wait()
        return
    if mode == "squashfs":  # its root exists only inside its own namespaces
        raise ContainerError(f"container {c.name} runs from a squashfs file: cp needs it running",
                             hint=f"rootless start {c.name}")
    if mode not in ("overlay", "fuse-overlayfs"):
        top = c.path("rootfs") if mode == "vfs" else str(c.config["rootfs"])
        userns.spawn(lambda: work(os.open(top, _DIR)), mapping=userns.caller_mapping()).wait()
        return
    with c.lock():
        for d in ("upper", "work", "merged"):
            os.makedirs(c.path(d), mode=0o755, exist_ok=True)
        layers_dir, data = _overlay_data(c)
        merged = c.path("merged")

        def mounted() -> None:
            from rootless.native import lib, new_error, raise_native_error

            err = new_error()
            if lib.rl_ns_mount_overlay(layers_dir.encode(), data.encode(), merged.encode(), err) < 0:
                raise_native_error(err)
            work(os.open(merged, _DIR))

        userns.spawn(mounted, mapping=userns.caller_mapping(for_mount=True), mount=True).wait()


def cp(c: Container, src: Endpoint, dst: Endpoint) -> None:
    """Copy between the container `c` and the host (exactly one side is inside)."""
    if src.inside == dst.inside:
        raise UsageError("copying between containers is not supported: one side must be a host path")
    host = Endpoint(os.path.abspath(dst.path if src.inside else src.path) +
                    ("/" if (dst.path if src.inside else src.path).endswith("/") else ""), False)
    if src.inside:
        def out(rootfd: int) -> None:
            copy(Root(rootfd), src.path, Root(None), host.path)

        in_container(c, out)
    else:
        def into(rootfd: int) -> None:
            copy(Root(None), host.path, Root(rootfd), dst.path)

        in_container(c, into)
