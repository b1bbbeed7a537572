"""Record the owners a root-emulated container asks for (`--fakeroot`).

With one mapped id, chown cannot really happen. The fakeroot seccomp filter sends
the chown family to this supervisor (seccomp user notification) instead of
dropping it; the supervisor writes the requested owner into the file's
`user.containers.override_stat` xattr, which the layer packer (commit, build)
turns into the owner in the layer, and answers "success". The file itself is
untouched. Runs in a thread of the foreground `rootless run` / build process.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading

OVERRIDE_XATTR = "user.containers.override_stat"
NOTIF = struct.Struct("=QII iI Q 6Q")  # struct seccomp_notif: id, pid, flags, data{nr, arch, ip, args[6]}
RESP = struct.Struct("=Qq iI")  # struct seccomp_notif_resp: id, val, error, flags
IOCTL_RECV = (3 << 30) | (NOTIF.size << 16) | (ord("!") << 8) | 0
IOCTL_SEND = (3 << 30) | (RESP.size << 16) | (ord("!") << 8) | 1
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000

# x86_64 and aarch64 syscall numbers of the chown family (the filter sends only these).
_ARCH = os.uname().machine
if _ARCH == "x86_64":
    SYS = {92: "chown", 94: "lchown", 93: "fchown", 260: "fchownat"}
elif _ARCH == "aarch64":
    SYS = {55: "fchown", 54: "fchownat"}
else:  # pragma: no cover - the filter itself refuses other architectures
    SYS = {}


def _read_path(pid: int, addr: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(addr)
        data = mem.read(4096)
    end = data.find(b"\0")
    if end < 0:
        raise OSError(errno.ENAMETOOLONG, "path too long")
    return data[:end]


def _target(pid: int, name: str, args: tuple[int, ...]) -> tuple[str, bool, int, int]:
    """(a path to the file as the host sees it, follow symlinks?, uid, gid)."""
    if name == "fchown":
        return f"/proc/{pid}/fd/{args[0]}", True, args[1], args[2]
    if name in ("chown", "lchown"):
        path, dirfd, uid, gid, follow = _read_path(pid, args[0]), AT_FDCWD, args[1], args[2], name == "chown"
    else:  # fchownat(dirfd, path, uid, gid, flags)
        dirfd = struct.unpack("=i", struct.pack("=I", args[0] & 0xFFFFFFFF))[0]
        path, uid, gid = _read_path(pid, args[1]), args[2], args[3]
        follow = not (args[4] & AT_SYMLINK_NOFOLLOW)
        if not path and args[4] & AT_EMPTY_PATH:
            return f"/proc/{pid}/fd/{dirfd}", True, uid, gid
    text = os.fsdecode(path)
    if text.startswith("/"):
        base = f"/proc/{pid}/root"
    elif dirfd == AT_FDCWD:
        base = f"/proc/{pid}/cwd"
    else:
        base = f"/proc/{pid}/fd/{dirfd}"
    return f"{base}/{text}", follow, uid, gid


def _as_id(value: int) -> int:
    value &= 0xFFFFFFFF
    return -1 if value == 0xFFFFFFFF else value


def record(path: str, follow: bool, uid: int, gid: int) -> None:
    st = os.stat(path, follow_symlinks=follow)
    if stat.S_ISLNK(st.st_mode):
        return  # symlinks carry no user xattrs: their owner is not kept (as with tar --xattrs)
    uid, gid = _as_id(uid), _as_id(gid)
    try:
        old = os.getxattr(path, OVERRIDE_XATTR, follow_symlinks=follow).decode().split(":")
        ouid, ogid = int(old[0]), int(old[1])
        kind = old[3] if len(old) > 3 else ("dir" if stat.S_ISDIR(st.st_mode) else "file")
        mode = int(old[2], 8)
    except (OSError, ValueError, IndexError):
        ouid = ogid = 0
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        mode = stat.S_IMODE(st.st_mode)
    value = f"{ouid if uid < 0 else uid}:{ogid if gid < 0 else gid}:0{mode:o}:{kind}"
    os.setxattr(path, OVERRIDE_XATTR, value.encode(), follow_symlinks=follow)


def _answer(fd: int, notif_id: int, error: int) -> None:
    import fcntl

    try:
        fcntl.ioctl(fd, IOCTL_SEND, RESP.pack(notif_id, 0, -error, 0))
    except OSError:
        pass  # the caller went away (killed): nothing to answer


def serve(fd: int) -> None:
    """Answer notifications until every process of the container is gone."""
    import fcntl
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        events = poller.poll()
        if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events) and not any(
                ev & select.POLLIN for _, ev in events):
            return
        buf = bytearray(NOTIF.size)
        try:
            fcntl.ioctl(fd, IOCTL_RECV, buf)
        except OSError as exc:
            if exc.errno in (errno.EINTR, errno.ENOENT):
                continue
            return
        notif_id, pid, _flags, nr, _arch, _ip, *args = NOTIF.unpack(bytes(buf))
        name = SYS.get(nr)
        error = 0
        if name is not None:
            try:
                record(*_target(pid, name, tuple(args)))
            except OSError as exc:
                # what the real call would say for a missing file; other failures
                # (no xattr support) must not break the package manager
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
                    error = exc.errno
        _answer(fd, notif_id, error)


def start(fd: int) -> threading.Thread:
    thread = threading.Thread(target=serve, args=(fd,), name="fakeroot-chown", daemon=True)
    thread.start()
    return thread
