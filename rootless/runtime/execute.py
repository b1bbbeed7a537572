"""`exec`: run another process in a running container's namespaces."""

from __future__ import annotations

import os

from rootless.errors import ContainerError
from rootless.runtime import runner, users
from rootless.runtime.containers import Container


class ExecOptions:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.env: list[str] = []
        self.user: str | None = None
        self.workdir: str | None = None
        self.interactive = False
        self.tty = False


class NoProcessToJoin(ContainerError):
    """Only the not-dumpable --init PID 1 is left in the container."""


def pid_namespace(pid: int) -> str:
    """The pid namespace of `pid` (as /proc/<pid>/ns/pid reads), or "" if unknown."""
    try:
        return os.readlink(f"/proc/{joinable_pid(pid)}/ns/pid")
    except (OSError, ContainerError):
        return ""


def joinable_pid(pid: int, pidns: str = "") -> int:
    """A process whose namespaces we may join: `pid` itself, or, when it is the
    `--init` PID 1 (not dumpable, so its /proc entries are closed to all but real
    root: it holds a copy of the runtime's memory), its first child, the container's
    command (or a process orphaned to it); failing that, any process of ours in the
    pid namespace `pidns` (processes that joined it, as --sharens ranks do, are
    children of their own runtime, outside)."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            if f.read().strip() != b"rootless-init":  # the name csrc/rl_spawn.c gives it
                return pid
    except OSError:
        return pid  # gone: the join fails with a clear error
    children = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rfind(b")") + 2:].split()
            if int(fields[1]) == pid:
                children.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    if children:
        return min(children)
    for name in os.listdir("/proc") if pidns else ():
        try:
            if name.isdigit() and int(name) != pid and os.readlink(f"/proc/{name}/ns/pid") == pidns:
                return int(name)
        except OSError:
            continue
    raise NoProcessToJoin("the container has no process left to join")


def run_exec(c: Container, opts: ExecOptions) -> int:
    st = c.status()
    if not st.running:
        raise ContainerError(f"container {c.name} is not running", hint="start it first")
    run = c.config["run"]
    assert isinstance(run, dict)
    pid = joinable_pid(st.pid)
    root = f"/proc/{pid}/root"
    user = users.resolve(root, opts.user if opts.user is not None else run.get("user"))
    base = runner.RunOptions(root, opts.argv)
    base.image_env = list(run.get("image_env", [])) + list(run.get("env", []))
    base.env = opts.env
    base.tty = opts.tty
    hostname = os.uname().nodename if run.get("network") == "host" and not run.get("hostname") else (
        run.get("hostname") or c.id[:12])
    join = Join(opts.argv, runner.build_env(base, user, str(hostname)),
                opts.workdir or str(run.get("workdir") or "/"), user)
    join.seccomp = bool(run.get("seccomp", True))
    join.fakeroot = bool(run.get("fakeroot"))
    join.setgroups = str(c.config.get("idmap_mode")) != "single"
    join.tty, join.interactive = opts.tty, opts.interactive
    return spawn_into(pid, join)


class Join:
    """A process to start in the namespaces of a running one (`exec`, `run --sharens`)."""

    def __init__(self, argv: list[str], env: list[str], cwd: str, user: users.User) -> None:
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.user = user
        self.seccomp = True
        self.fakeroot = False
        self.setgroups = False  # whether the id mapping allows setgroups()
        self.tty = False
        self.interactive = False
        self.on_resumed: object = None  # called once the process runs (before waiting)


def spawn_into(pid: int, join: Join) -> int:
    """Run `join` in the namespaces of `pid`; wait for it and return its exit status."""
    from rootless.native import NativeError
    from rootless.native import spawn as native_spawn

    cfg = native_spawn.SpawnConfig(f"/proc/{pid}/root", join.argv, join.env)
    cfg.cwd = join.cwd
    cfg.uid, cfg.gid = join.user.uid, join.user.gid
    flags = native_spawn.SF_NO_NEW_PRIVS
    if join.seccomp:
        flags |= native_spawn.SF_SECCOMP
    if join.fakeroot:
        flags |= native_spawn.SF_FAKEROOT
    if join.setgroups:
        flags |= native_spawn.SF_SETGROUPS
        cfg.groups = list(join.user.groups)
    devnull = -1
    if join.tty:
        from rootless.runtime.tty import window_size

        flags |= native_spawn.SF_TTY
        cfg.tty_rows, cfg.tty_cols = window_size(0 if os.isatty(0) else 1)
    elif not join.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        cfg.stdio = (devnull, 1, 2)
    cfg.sflags = flags
    forwarder = runner.SignalForwarder()
    try:
        child = native_spawn.exec_in(pid, cfg)
        forwarder.pid = child.pid
        try:
            child.resume()
        except NativeError as exc:
            runner.wait_exit_code(child.pid)
            raise runner.native_to_user_error(exc, join.argv[0]) from exc
        finally:
            if devnull >= 0:
                os.close(devnull)
        if join.on_resumed is not None:
            join.on_resumed()  # type: ignore[operator]
        if join.tty:
            from rootless.runtime.tty import relay

            try:
                relay(child.pty_fd, join.interactive)
            finally:
                os.close(child.pty_fd)
        return runner.wait_exit_code(child.pid)
    finally:
        forwarder.restore()
