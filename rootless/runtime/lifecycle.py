"""Container lifecycle: start (under a monitor), stop, kill, remove, wait.

start: this process double-forks. The grandchild clones the container (which
waits), writes its id maps, optionally accepts the first attach client, lets the
container exec, records state.json, and then execs rootless-monitor, which
inherits the container as its child together with its stdio. The CLI can exit
at any time afterwards; the container and its monitor carry on.
"""

from __future__ import annotations

import os
import time
from _signal import SIGKILL, SIGTERM  # type: ignore[import-not-found]  # not `signal`: enum costs 4 ms

from rootless import log
from rootless.errors import ContainerError, RootlessError
from rootless.runtime import state
from rootless.runtime.containers import Container, ContainerStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

SOCKET_DIR = "s"


def socket_path(c: Container) -> str:
    # sun_path holds 108 bytes: keep it short and out of the long per-container path.
    return os.path.join(os.path.dirname(c.store.run_dir), SOCKET_DIR, c.id[:16])


def _rootfs_and_ops(c: Container, ephemeral: bool = False) -> tuple[str, list[object]]:
    from rootless.native.spawn import OP_OVERLAY, MountOp

    mode = str(c.config.get("rootfs_mode", "rootfs"))
    if mode == "rootfs":
        return str(c.config["rootfs"]), []
    if mode == "vfs":
        return c.path("rootfs"), []
    if mode == "squashfs":
        from rootless.runtime import squashfs

        return squashfs.rootfs_and_ops(c)  # type: ignore[return-value]
    layers_dir = str(c.config["layers_dir"])
    lower = ":".join(reversed([str(x) for x in c.config["lower"]]))  # type: ignore[attr-defined]
    dirs = f"lowerdir={lower},upperdir={c.path('upper')},workdir={c.path('work')}"
    if len(dirs) > 4000:
        raise ContainerError("too many layers for one overlay mount", hint="flatten the image")
    merged = c.path("merged")
    if mode == "fuse-overlayfs":
        from rootless.native.spawn import OP_HELPER
        from rootless.runtime.storage import fuse_overlayfs_path

        helper = fuse_overlayfs_path()
        if helper is None:
            raise ContainerError("fuse-overlayfs is not usable here (not installed, or no /dev/fuse)")
        return merged, [MountOp(OP_HELPER, merged, source=layers_dir, argv=[helper, "-o", dirs, merged])]
    # volatile: no syncs of the upper layer (its umount at exit otherwise flushes it),
    # for a container that is deleted when it exits (podman does the same for --rm)
    opts = ",userxattr,volatile" if ephemeral else ",userxattr"
    return merged, [MountOp(OP_OVERLAY, merged, source=layers_dir, data=dirs + opts)]


def run_options(c: Container, ephemeral: bool = False) -> object:
    """The container's RunOptions; `ephemeral`: it is removed when it exits (run --rm)."""
    from rootless.runtime.runner import RunOptions

    rootfs, ops = _rootfs_and_ops(c, ephemeral)
    opts = RunOptions.from_dict(rootfs, c.config["run"])  # type: ignore[arg-type]
    opts.pre_ops = ops  # type: ignore[assignment]
    opts.container_id = c.id
    opts.ephemeral = ephemeral
    if c.config.get("rootfs_mode") in ("overlay", "fuse-overlayfs"):
        layers_dir = str(c.config["layers_dir"])
        lower = [os.path.realpath(os.path.join(layers_dir, str(x))) for x in c.config["lower"]]  # type: ignore[attr-defined]
        opts.user_layers = [c.path("upper"), *reversed(lower)]
    elif c.config.get("rootfs_mode") == "squashfs":
        from rootless.runtime import squashfs

        opts.user_layers = squashfs.user_layers(c)
    return opts


def _report(fd: int, obj: dict[str, object]) -> None:
    from rootless.runtime.jsonlite import dumps

    os.write(fd, (dumps(obj) + "\n").encode())


def _monitor_child(c: Container, opts: object, listen: socket.socket, attach: bool, report_fd: int,
                   on_exit: list[str]) -> None:
    """In the double-forked grandchild: start the container, then become the monitor."""
    from rootless.libexec import MONITOR
    from rootless.native import NativeError
    from rootless.native import spawn as native_spawn
    from rootless.runtime import idmap, runner

    os.setsid()
    try:
        cfg, mapping, _ = runner.prepare(opts)  # type: ignore[arg-type]
        tty = bool(c.config["run"]["tty"])  # type: ignore[index]
        interactive = bool(c.config["run"]["interactive"])  # type: ignore[index]
        child_ends: list[int] = []
        mon_args: list[str] = []
        if not tty:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if interactive:
                in_r, in_w = os.pipe()
            else:
                in_r, in_w = os.open("/dev/null", os.O_RDONLY), -1
            cfg.stdio = (in_r, out_w, err_w)  # type: ignore[attr-defined]
            child_ends = [in_r, out_w, err_w]
            mon_args += ["--stdout-fd", str(out_r), "--stderr-fd", str(err_r)]
            if in_w >= 0:
                mon_args += ["--stdin-fd", str(in_w)]
        if opts.fakeroot:  # type: ignore[attr-defined]
            cfg.sflags |= native_spawn.SF_FAKEROOT_RECORD  # type: ignore[attr-defined]  # the monitor records chowns
        child = native_spawn.spawn(cfg)  # type: ignore[arg-type]
        try:
            idmap.apply(mapping, child.pid)
            if runner.TIMINGS is not None:
                runner.TIMINGS.phase("namespace setup")
            client = None
            if attach:
                listen.settimeout(30)
                client, _ = listen.accept()
            child.resume()
            if runner.TIMINGS is not None:
                runner.TIMINGS.phase("exec")
        except BaseException:
            child.abort()
            os.waitpid(child.pid, 0)
            raise
        for fd in child_ends:
            os.close(fd)
        if tty:
            mon_args += ["--pty-fd", str(child.pty_fd)]
        if child.notify_fd >= 0:
            mon_args += ["--notify-fd", str(child.notify_fd)]
        start = state.pid_start_time(child.pid)
        state.atomic_write_json(c.run_path("state.json"), {
            "pid": child.pid, "pid_start": start, "monitor_pid": os.getpid(),
            "monitor_start": state.pid_start_time(os.getpid()), "started_at": time.time(),
        })
        for p in (c.run_path("exit"),):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        argv = [MONITOR, "--pid", str(child.pid), "--socket-fd", str(listen.fileno()),
                "--log", c.log_path, "--exit-file", c.run_path("exit"), "--exit-file", c.path("exit")]
        argv += mon_args
        if client is not None:
            argv += ["--client-fd", str(client.fileno())]
            os.set_inheritable(client.fileno(), True)
        if on_exit:
            argv += ["--on-exit", *on_exit]
        for a in argv[1:]:
            if a.isdigit() and a != str(child.pid):
                try:
                    os.set_inheritable(int(a), True)
                except OSError:
                    pass
        _report(report_fd, {"ok": True, "pid": child.pid, **(
            {"timings": runner.TIMINGS.phases} if runner.TIMINGS is not None else {})})
        os.close(report_fd)
        null = os.open("/dev/null", os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(null, i)
        os.execv(MONITOR, argv)
    except NativeError as exc:
        err = runner.native_to_user_error(exc, str(c.config["run"]["argv"][0]))  # type: ignore[index]
        _report(report_fd, {"error": err.message, "hint": err.hint, "code": err.exit_code})
    except RootlessError as exc:
        _report(report_fd, {"error": exc.message, "hint": exc.hint, "code": exc.exit_code})
    except BaseException as exc:  # noqa: BLE001 - reported to the CLI as one line
        _report(report_fd, {"error": f"cannot start the container: {exc}", "code": 125})
    os._exit(125)


def start(c: Container, attach: bool = False, on_exit: list[str] | None = None) -> socket.socket | None:
    """Start `c` under a monitor. With attach, return a socket already attached to it
    (connected before the container runs, so no output is missed)."""
    with c.lock():
        return _start_locked(c, attach, on_exit)


def _start_locked(c: Container, attach: bool, on_exit: list[str] | None) -> socket.socket | None:
    import socket

    if c.status().running:
        raise ContainerError(f"container {c.name} is already running")
    c.store.ensure_run_dir(c)
    if c.config.get("rootfs_mode") in ("overlay", "fuse-overlayfs"):
        for d in ("upper", "work", "merged"):
            os.makedirs(c.path(d), mode=0o755, exist_ok=True)
    opts = run_options(c)
    opts.runroot = os.path.dirname(c.store.run_dir)  # type: ignore[attr-defined]
    opts.state_dir = c.run_dir  # type: ignore[attr-defined]
    sock_path = socket_path(c)
    os.makedirs(os.path.dirname(sock_path), mode=0o700, exist_ok=True)
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(sock_path)
    listen.listen(16)
    client = None
    if attach:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(sock_path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if client is not None:
                client.close()
            if os.fork() == 0:
                _monitor_child(c, opts, listen, attach, w, on_exit or [])
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(125)
    os.close(w)
    listen.close()
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    try:
        import json

        result = json.loads(line) if line else {"error": "the container monitor died while starting", "code": 125}
    except ValueError:
        result = {"error": "the container monitor sent garbage", "code": 125}
    if "error" in result:
        if client is not None:
            client.close()
        hint = result.get("hint")
        exc = RootlessError(str(result["error"]), hint=str(hint) if hint else None)
        code = result.get("code", 125)
        exc.exit_code = code if isinstance(code, int) else 125
        raise exc
    from rootless.runtime import runner

    if runner.TIMINGS is not None:  # the phases the monitor measured
        runner.TIMINGS.phases = []
        runner.TIMINGS.adopt(result.get("timings"))
    log.debug(f"container {c.id[:12]} started, pid {result['pid']}")
    return client


def signal_container(c: Container, sig: int) -> None:
    st = c.status()
    if not st.running:
        raise ContainerError(f"container {c.name} is not running")
    try:
        os.kill(st.pid, sig)
    except ProcessLookupError:
        pass


def wait_stopped(c: Container, timeout: float | None = None) -> state.Status:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        st = c.status()
        if not st.running:
            # the monitor writes the exit file right after the process is reaped
            if st.exit_code is not None or st.state == "created":
                return st
        if deadline is not None and time.monotonic() > deadline:
            return st
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def stop(c: Container, timeout: float = 10.0) -> None:
    """SIGTERM (or the image's StopSignal), then SIGKILL after `timeout` seconds."""
    st = c.status()
    if not st.running:
        return
    sig = int(c.config.get("stop_signal", SIGTERM))  # type: ignore[call-overload]
    try:
        os.kill(st.pid, sig)
    except ProcessLookupError:
        return
    if wait_stopped(c, timeout).running:
        try:
            os.kill(st.pid, SIGKILL)
        except ProcessLookupError:
            pass
    wait_stopped(c, 10.0)


def remove(c: Container, force: bool = False, stopped: bool = False) -> None:
    """Delete the container (refuses a running one unless force). `stopped`: the
    caller knows it has exited (no state to read)."""
    from rootless.native.fs import rmtree
    from rootless.runtime.containers import NoSuchContainer

    with c.lock():
        if not os.path.exists(c.path("config.json")):
            raise NoSuchContainer(f"no such container: {c.name}")  # another rm was first
        if not stopped and c.status().running:
            if not force:
                raise ContainerError(
                    f"cannot remove container {c.name}: it is running",
                    hint="stop it first, or use rm -f")
            st = c.status()
            try:
                os.kill(st.pid, SIGKILL)
            except ProcessLookupError:
                pass
            wait_stopped(c, 10.0)
        # One rename takes the container out of `ps` whole (config.json and all);
        # a kill during the delete below leaves a trash directory that the next
        # `rm` finishes, never a half-deleted container.
        trash = c.store.trash_path(c.id)
        os.rename(c.dir, trash)
        if "ROOTLESS_CRASH_AT" in os.environ:
            from rootless.store import crash

            crash.point("container-removing")
        remove_tree(trash, str(c.config.get("idmap_mode", "")))
        try:
            rmtree(c.run_dir)
        except OSError:
            pass
        c.store.release_name(c.name, c.id)
        try:
            os.unlink(socket_path(c))
        except FileNotFoundError:
            pass
    finish_removals(c.store)


def finish_removals(store: ContainerStore) -> None:
    """Delete what killed `rm`s left in the trash (see ContainerStore.trash_path)."""
    from rootless.native.fs import rmtree
    from rootless.runtime.containers import TRASH_PREFIX

    for path in store.claim_stale_trash():
        cfg = state.read_json(os.path.join(path, "config.json")) or {}
        try:
            remove_tree(path, str(cfg.get("idmap_mode", "")))
            rmtree(os.path.join(store.run_dir, os.path.basename(path)[len(TRASH_PREFIX):].rpartition("-")[0]))
        except Exception as exc:  # noqa: BLE001 - the next rm tries again
            log.debug(f"could not finish removing {path}: {exc}")


def remove_tree(path: str, idmap_mode: str) -> None:
    """Delete a container's directory; files owned by subordinate ids need the user
    namespace (tried only when a plain delete is refused: usually there are none)."""
    from rootless.native import NativeError
    from rootless.native.fs import rmtree, rmtree_in_userns

    try:
        rmtree(path)
        return
    except NativeError:
        if idmap_mode != "full" or os.getuid() == 0:
            raise
    from rootless.runtime import idmap

    mapping = idmap.plan()
    rmtree_in_userns(path, lambda pid: idmap.apply(mapping, pid))
