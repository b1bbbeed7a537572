"""Typed wrappers over the C spawn API: clone into namespaces, map ids, build the root, exec.

Everything the C child needs is built here as cdata before `rl_spawn`, and kept alive
on the returned `Child` until the child has exec'ed (the child never allocates).
"""

from __future__ import annotations

from rootless.native import ffi, lib, native_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

OP_BIND = lib.RL_OP_BIND
OP_MOUNT = lib.RL_OP_MOUNT
OP_MKDIR = lib.RL_OP_MKDIR
OP_SYMLINK = lib.RL_OP_SYMLINK
OP_REMOUNT_RO = lib.RL_OP_REMOUNT_RO
OP_OVERLAY = lib.RL_OP_OVERLAY
OP_HELPER = lib.RL_OP_HELPER

MF_RDONLY = lib.RL_MF_RDONLY
MF_RECURSIVE = lib.RL_MF_RECURSIVE
MF_FILE = lib.RL_MF_FILE
MF_OPTIONAL = lib.RL_MF_OPTIONAL
MF_NOCREATE = lib.RL_MF_NOCREATE
MF_SELF = lib.RL_MF_SELF

SF_NEWNET = lib.RL_SF_NEWNET
SF_TTY = lib.RL_SF_TTY
SF_INIT = lib.RL_SF_INIT
SF_READONLY_ROOT = lib.RL_SF_READONLY_ROOT
SF_SETGROUPS = lib.RL_SF_SETGROUPS
SF_NO_NEW_PRIVS = lib.RL_SF_NO_NEW_PRIVS
SF_FAKEROOT = lib.RL_SF_FAKEROOT
SF_SECCOMP = lib.RL_SF_SECCOMP
SF_FAKEROOT_RECORD = lib.RL_SF_FAKEROOT_RECORD
SF_LINGER = lib.RL_SF_LINGER


class MountOp:
    """One entry of the mount table (see csrc/rl_api.h)."""

    __slots__ = ("op", "target", "source", "fstype", "data", "flags", "mode", "mflags", "argv")

    def __init__(
        self,
        op: int,
        target: str,
        source: str | None = None,
        fstype: str | None = None,
        data: str | None = None,
        flags: int = 0,
        mode: int = 0,
        mflags: int = 0,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.argv = list(argv) if argv is not None else None
        self.op = op
        self.target = target
        self.source = source
        self.fstype = fstype
        self.data = data
        self.flags = flags
        self.mode = mode
        self.mflags = mflags

    def __repr__(self) -> str:
        return f"MountOp({self.op}, {self.target!r}, source={self.source!r}, fstype={self.fstype!r})"


class SpawnConfig:
    """A complete, resolved description of the process to start."""

    __slots__ = (
        "rootfs", "mounts", "argv", "env", "cwd", "uid", "gid", "groups", "hostname",
        "stdio", "sflags", "tty_rows", "tty_cols",
    )

    def __init__(self, rootfs: str, argv: Sequence[str], env: Sequence[str]) -> None:
        self.rootfs = rootfs
        self.argv = list(argv)
        self.env = list(env)
        self.mounts: list[MountOp] = []
        self.cwd = "/"
        self.uid = 0
        self.gid = 0
        self.groups: list[int] = []
        self.hostname = ""
        self.stdio = (0, 1, 2)
        self.sflags = 0
        self.tty_rows = 0
        self.tty_cols = 0


class Child:
    """A cloned child waiting in its new namespaces.

    Until it execs, the child shares this process's memory (CLONE_VM): its stack and
    the config cdata in `_keep` must stay alive until `resume()` returned or the child
    was reaped (then `release()`).
    """

    __slots__ = ("pid", "_c", "_keep", "_cfg")

    def __init__(self, c: object, keep: list[object], cfg: object = None) -> None:
        self._c = c
        self._keep = keep
        self._cfg = cfg
        self.pid: int = c.pid  # type: ignore[attr-defined]

    @property
    def pty_fd(self) -> int:
        return int(self._c.pty_fd)  # type: ignore[attr-defined]

    @property
    def notify_fd(self) -> int:
        return int(self._c.notify_fd)  # type: ignore[attr-defined]

    def resume(self) -> None:
        """Let the child build its root and exec; raise NativeError on its failure."""
        err = ffi.new("struct rl_error *")
        if lib.rl_continue(self._c, err) < 0:
            raise native_error(err)
        self.release()  # the child has exec'ed: it no longer uses our memory

    def abort(self) -> None:
        lib.rl_abort(self._c)

    def release(self) -> None:
        """Free the child's stack and config; only once it has exec'ed or been reaped."""
        lib.rl_release(self._c)
        self._keep.clear()


def _cstr(keep: list[object], s: str | None) -> object:
    if s is None:
        return ffi.NULL
    buf = ffi.new("char[]", s.encode("utf-8", "surrogateescape"))
    keep.append(buf)
    return buf


def _cstrv(keep: list[object], items: Sequence[str]) -> object:
    arr = ffi.new("char *[]", len(items) + 1)
    for i, s in enumerate(items):
        arr[i] = _cstr(keep, s)
    keep.append(arr)
    return arr


def spawn(cfg: SpawnConfig) -> Child:
    """Clone the child (it waits for `Child.resume()`); raise NativeError on failure."""
    return _start(cfg, None)


def exec_in(target_pid: int, cfg: SpawnConfig) -> Child:
    """A child that will join the namespaces of `target_pid` and run cfg.argv there."""
    return _start(cfg, target_pid)


def spawn_early(sflags: int) -> Child:
    """Clone the child before its config is known; fill it in with `Child.configure`
    before `resume()`. The child shares our memory (CLONE_VM) and reads its config
    only after it is told to go, so work such as newuidmap can overlap the rest of
    the preparation. Not for SF_INIT (that child gets a copy of our memory)."""
    if sflags & SF_INIT:
        raise ValueError("spawn_early cannot be used with SF_INIT")
    keep: list[object] = []
    c = ffi.new("struct rl_spawn_config *")
    keep.append(c)
    c.sflags = sflags
    child = ffi.new("struct rl_child *")
    err = ffi.new("struct rl_error *")
    if lib.rl_spawn(c, child, err) < 0:
        raise native_error(err)
    return Child(child, keep, c)


def configure(child: Child, cfg: SpawnConfig) -> None:
    """Give an early child its full config (before resume)."""
    assert child._cfg is not None
    _fill(child._cfg, cfg, child._keep)


def _start(cfg: SpawnConfig, target_pid: int | None) -> Child:
    keep: list[object] = []
    c = ffi.new("struct rl_spawn_config *")
    keep.append(c)
    _fill(c, cfg, keep)
    child = ffi.new("struct rl_child *")
    err = ffi.new("struct rl_error *")
    rc = lib.rl_spawn(c, child, err) if target_pid is None else lib.rl_exec(target_pid, c, child, err)
    if rc < 0:
        raise native_error(err)
    return Child(child, keep)


def _fill(c: Any, cfg: SpawnConfig, keep: list[object]) -> None:  # c: a cffi struct rl_spawn_config
    c.sflags = cfg.sflags
    c.rootfs = _cstr(keep, cfg.rootfs)
    mounts = ffi.new("struct rl_mount[]", max(len(cfg.mounts), 1))
    keep.append(mounts)
    for i, m in enumerate(cfg.mounts):
        dst = mounts[i]
        dst.op = m.op
        dst.mflags = m.mflags
        dst.source = _cstr(keep, m.source)
        dst.target = _cstr(keep, m.target)
        dst.fstype = _cstr(keep, m.fstype)
        dst.data = _cstr(keep, m.data)
        dst.flags = m.flags
        dst.mode = m.mode
        dst.argv = _cstrv(keep, m.argv) if m.argv is not None else ffi.NULL
    c.mounts = mounts
    c.n_mounts = len(cfg.mounts)
    c.argv = _cstrv(keep, cfg.argv)
    c.envp = _cstrv(keep, cfg.env)
    c.cwd = _cstr(keep, cfg.cwd)
    c.uid = cfg.uid
    c.gid = cfg.gid
    groups = ffi.new("uint32_t[]", cfg.groups or [0])
    keep.append(groups)
    c.groups = groups
    c.n_groups = len(cfg.groups)
    c.hostname = _cstr(keep, cfg.hostname)
    c.stdio = list(cfg.stdio)
    c.tty_rows = cfg.tty_rows
    c.tty_cols = cfg.tty_cols


def set_idmap(
    pid: int,
    uids: Sequence[tuple[int, int, int]],
    gids: Sequence[tuple[int, int, int]],
    deny_setgroups: bool,
) -> None:
    """Write the child's id maps directly (single id, or root)."""
    cu = ffi.new("struct rl_idmap[]", [list(m) for m in uids])
    cg = ffi.new("struct rl_idmap[]", [list(m) for m in gids])
    err = ffi.new("struct rl_error *")
    if lib.rl_set_idmap(pid, cu, len(uids), cg, len(gids), int(deny_setgroups), err) < 0:
        raise native_error(err)
