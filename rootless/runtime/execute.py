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


def run_exec(c: Container, opts: ExecOptions) -> int:
    from rootless.native import NativeError
    from rootless.native import spawn as native_spawn

    st = c.status()
    if not st.running:
        raise ContainerError(f"container {c.name} is not running", hint="start it first")
    run = c.config["run"]
    assert isinstance(run, dict)
    root = f"/proc/{st.pid}/root"
    user = users.resolve(root, opts.user if opts.user is not None else run.get("user"))
    base = runner.RunOptions(root, opts.argv)
    base.image_env = list(run.get("image_env", [])) + list(run.get("env", []))
    base.env = opts.env
    base.tty = opts.tty
    hostname = os.uname().nodename if run.get("network") == "host" and not run.get("hostname") else (
        run.get("hostname") or c.id[:12])
    cfg = native_spawn.SpawnConfig(root, opts.argv, runner.build_env(base, user, str(hostname)))
    cfg.cwd = opts.workdir or str(run.get("workdir") or "/")
    cfg.uid, cfg.gid = user.uid, user.gid
    mode = str(c.config.get("idmap_mode"))
    flags = native_spawn.SF_NO_NEW_PRIVS
    if run.get("seccomp", True):
        flags |= native_spawn.SF_SECCOMP
    if run.get("fakeroot"):
        flags |= native_spawn.SF_FAKEROOT
    if mode != "single":
        flags |= native_spawn.SF_SETGROUPS
        cfg.groups = list(user.groups)
    devnull = -1
    if opts.tty:
        from rootless.runtime.tty import window_size

        flags |= native_spawn.SF_TTY
        cfg.tty_rows, cfg.tty_cols = window_size(0 if os.isatty(0) else 1)
    elif not opts.interactive:
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        cfg.stdio = (devnull, 1, 2)
    cfg.sflags = flags
    forwarder = runner.SignalForwarder()
    try:
        child = native_spawn.exec_in(st.pid, cfg)
        forwarder.pid = child.pid
        try:
            child.resume()
        except NativeError as exc:
            runner.wait_exit_code(child.pid)
            raise runner.native_to_user_error(exc, opts.argv[0]) from exc
        finally:
            if devnull >= 0:
                os.close(devnull)
        if opts.tty:
            from rootless.runtime.tty import relay

            try:
                relay(child.pty_fd, opts.interactive)
            finally:
                os.close(child.pty_fd)
        return runner.wait_exit_code(child.pid)
    finally:
        forwarder.restore()
