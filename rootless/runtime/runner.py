"""Run one process in a new container, in the foreground.

Python decides everything (ids, mounts, environment, user); the C core clones the
child, which waits while its id maps are written, then builds its root, pivots and
execs. This process stays as the parent: it forwards signals, relays the pty, and
returns the container's exit status.
"""

from __future__ import annotations

import os

from rootless import log
from rootless.errors import (
    ContainerError,
    RootlessError,
    ExecNotFoundError,
    ExecPermissionError,
    UnsupportedHostError,
    UsageError,
)
from rootless.runtime import idmap, mounts, users

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.native.spawn import MountOp
    from rootless.runtime.timings import Timings

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FORWARDED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT")
# A foreground container still alive this long after a forwarded SIGTERM/SIGINT/SIGHUP
# is killed: its PID 1 ignores signals it has no handler for, and Slurm's scancel
# (SIGTERM, then SIGKILL after KillWait, 30 s by default) must stop it.
KILL_GRACE = float(os.environ.get("ROOTLESS_KILL_GRACE") or 10)
# `run --timings` sets this to a timings.Timings; None (the default) costs one test.
TIMINGS: Timings | None = None


class RunOptions:
    """What `rootless run` was asked to do, before resolution."""

    def __init__(self, rootfs: str, argv: list[str]) -> None:
        self.rootfs = rootfs
        self.argv = argv
        self.env: list[str] = []
        self.env_files: list[str] = []
        self.workdir: str | None = None
        self.user: str | None = None
        self.volumes: list[str] = []
        self.tmpfs: list[str] = []
        self.hostname: str | None = None
        self.read_only = False
        self.network = "host"
        self.interactive = False
        self.tty = False
        self.init = False
        self.keep_id = False
        self.fakeroot = False
        self.seccomp = True  # the default profile; --security-opt seccomp=unconfined turns it off
        self.host_env: list[str] = []  # --env-host: the host's variables, resolved at create
        self.home: str | None = None  # --home: the host home, bound at its path
        self.devices: list[str] = []  # --device (paths or CDI names)
        self.gpus: str | None = None  # --gpus
        self.container_id = os.urandom(32).hex()
        self.runroot = ""
        # Set by the container lifecycle (image-based containers):
        self.image_env: list[str] = []  # the image's Env, under -e/--env-file
        self.pre_ops: list[MountOp] = []  # e.g. the overlay root, mounted before the root is built
        self.state_dir: str | None = None  # where hosts/hostname/resolv.conf copies go (writable)
        self.ephemeral = False  # `run --rm` in the foreground: the host's /etc files do, read-only
        self.user_layers: list[str] | None = None  # overlay dirs, top down, for --user lookups
        self.on_started: object = None  # called with the container's pid once it runs
        self.linger = False  # with init: PID 1 waits for processes that joined (--sharens)
        self.plan: object = None  # a rootless.runtime.plan.Request: write this run's plan
        self.plan_container: object = None  # with `plan`, for `run --rm IMAGE`: a plan.ContainerPlan
        self.plan_command: list[str] = []  # with `plan`: the command as given on the command line

    def to_dict(self) -> dict[str, object]:
        keys = ("argv", "env", "env_files", "workdir", "user", "volumes", "tmpfs", "hostname",
                "read_only", "network", "interactive", "tty", "init", "keep_id", "image_env", "fakeroot",
                "host_env", "home", "devices", "gpus", "seccomp")
        return {k: getattr(self, k) for k in keys}

    @classmethod
    def from_dict(cls, rootfs: str, d: dict[str, object]) -> RunOptions:
        opts = cls(rootfs, list(d["argv"]))  # type: ignore[call-overload]
        for k, v in d.items():
            if k != "argv" and hasattr(opts, k):
                setattr(opts, k, v)
        return opts


def parse_volume(spec: str) -> mounts.Volume:
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {spec!r}: expected SRC:DST[:ro|rw]")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    opts = set(mode.split(","))
    if not opts <= {"ro", "rw", "z", "Z"} or {"ro", "rw"} <= opts:
        raise UsageError(f"invalid volume mode {mode!r} in {spec!r}: use ro or rw")
    if not src.startswith("/"):
        raise UsageError(f"invalid volume {spec!r}: the source must be an absolute host path")
    if not dst.startswith("/"):
        raise UsageError(f"invalid volume {spec!r}: the destination must be an absolute path")
    try:
        st = os.stat(src)
    except OSError as exc:
        raise ContainerError(f"volume source {src} does not exist: {exc.strerror}",
                             hint="create it first, or fix the path") from exc
    import stat

    return mounts.Volume(os.path.realpath(src), dst, "ro" in opts, not stat.S_ISDIR(st.st_mode))


def read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror}") from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def build_env(opts: RunOptions, user: users.User, hostname: str) -> list[str]:
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": user.home}
    if opts.tty:
        env["TERM"] = "xterm"
    entries = list(opts.host_env) + list(opts.image_env)
    entries += [e for f in opts.env_files for e in read_env_file(f)] + opts.env
    for item in entries:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable {item!r}")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    if opts.home:
        env["HOME"] = opts.home
    return [f"{k}={v}" for k, v in env.items()]


def _host_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def write_etc_files(state_dir: str, hostname: str, host_net: bool) -> dict[str, str]:
    """Generate hosts, hostname and resolv.conf for the container (the rootfs is untouched)."""
    if host_net:
        hosts = _host_file("/etc/hosts") or "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
        if hostname != os.uname().nodename:
            hosts += f"127.0.1.1\t{hostname}\n"
    else:
        hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    contents = {
        "hosts": hosts,
        "hostname": hostname + "\n",
        "resolv.conf": _host_file("/etc/resolv.conf") or "nameserver 127.0.0.1\n",
    }
    files = {}
    for name, text in contents.items():
        path = os.path.join(state_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        files[name] = path
    return files


def _check_rootfs(rootfs: str) -> str:
    import stat

    try:
        st = os.stat(rootfs)
    except OSError as exc:
        raise ContainerError(f"rootfs {rootfs} does not exist: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ContainerError(f"rootfs {rootfs} is not a directory")
    return os.path.realpath(rootfs)


def exec_error(exc: OSError, argv0: str) -> ContainerError:
    """Map a failed execve in the container to docker's 127/126."""
    import errno

    if exc.errno == errno.ENOENT:
        return ExecNotFoundError(f'exec: "{argv0}": executable file not found in $PATH')
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
        return ExecPermissionError(f'exec: "{argv0}": permission denied ({exc.strerror})')
    return ExecPermissionError(f'exec: "{argv0}": {exc.strerror}')


def native_to_user_error(exc: OSError, argv0: str) -> ContainerError | UnsupportedHostError:
    stage = getattr(exc, "stage", "")
    if stage == "exec":
        return exec_error(exc, argv0)
    if stage == "clone":
        from rootless.runtime.hostcheck import explain_userns_failure

        what, hint = explain_userns_failure(exc.errno or 0)
        return UnsupportedHostError(what, hint=hint)
    if stage == "cwd":
        return ExecPermissionError(str(exc))
    return ContainerError(f"{stage}: {exc}" if stage else str(exc))


class SignalForwarder:
    """Forward the signals this process gets to the container's PID 1."""

    def __init__(self) -> None:
        import _signal  # type: ignore[import-not-found]  # `signal` would import enum (4 ms)

        self.pid = 0
        self.saved: dict[int, object] = {}
        for name in FORWARDED_SIGNALS:
            sig = getattr(_signal, name)
            self.saved[sig] = _signal.signal(sig, self._forward)

    def _forward(self, sig: int, frame: object) -> None:
        if self.pid > 0:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            import _signal  # `signal` would import enum (4 ms)

            if sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP) and KILL_GRACE > 0:
                self.saved.setdefault(_signal.SIGALRM, _signal.signal(_signal.SIGALRM, self._kill))
                _signal.setitimer(_signal.ITIMER_REAL, KILL_GRACE)

    def _kill(self, sig: int, frame: object) -> None:
        if self.pid > 0:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass

    def restore(self) -> None:
        import _signal  # `signal` would import enum (4 ms)

        if _signal.SIGALRM in self.saved:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        for sig, handler in self.saved.items():
            _signal.signal(sig, handler)


def wait_exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def prepare(opts: RunOptions) -> tuple[object, idmap.IdMapping, str]:
    """Resolve options into a SpawnConfig, an id mapping and the state dir."""
    from rootless.native.spawn import (
        SF_INIT, SF_NEWNET, SF_NO_NEW_PRIVS, SF_READONLY_ROOT, SF_SETGROUPS, SF_TTY, SpawnConfig,
    )
    from rootless.paths import ensure_private_dir

    rootfs = _check_rootfs(opts.rootfs)
    if not opts.argv:
        raise UsageError("no command given: pass one after the options (e.g. `sh`)")
    volumes = [parse_volume(v) for v in opts.volumes]
    if opts.home:
        volumes.insert(0, mounts.Volume(opts.home, opts.home, False, False))
    user = users.resolve(rootfs, opts.user, opts.user_layers)
    mapping = idmap.plan(opts.keep_id and opts.user is None, user.uid, user.gid)
    if opts.keep_id and opts.user is None:
        user.uid, user.gid = mapping.container_uid, mapping.container_gid
    if not mapping.maps_uid(user.uid) or not mapping.maps_gid(user.gid):
        raise ContainerError(
            f"user {user.uid}:{user.gid} is not mapped in the user namespace ({mapping.mode} mapping)",
            hint="add subordinate ids for this user in /etc/subuid and /etc/subgid",
        )
    log.debug(f"id mapping: {mapping.describe()}")
    if mapping.mode == "single" and opts.pre_ops:
        from rootless.runtime.squashfs import single_owner

        single_owner(opts.pre_ops, mapping.container_uid, mapping.container_gid)
    host_net = opts.network == "host"
    hostname = opts.hostname or (os.uname().nodename if host_net else opts.container_id[:12])
    cfg = SpawnConfig(rootfs, opts.argv, build_env(opts, user, hostname))
    state_dir = ""
    host_files = host_net and hostname == os.uname().nodename
    if opts.state_dir and not (opts.ephemeral and host_files):
        # A persistent container gets its own writable copies, as with docker.
        state_dir = opts.state_dir
        etc_ops = mounts.etc_mounts(write_etc_files(state_dir, hostname, host_net))
    elif host_files:
        # The host's own files are right as they are: bind them read-only, write nothing
        # (`run --rm` in the foreground, the batch-job path).
        etc = {name: "/etc/" + name for name in ("hosts", "hostname", "resolv.conf")
               if os.path.exists("/etc/" + name)}
        etc_ops = mounts.etc_mounts(etc, readonly=True)
    else:
        state_dir = os.path.join(ensure_private_dir(opts.runroot), "run-" + opts.container_id[:16])
        os.mkdir(state_dir, 0o700)
        etc_ops = mounts.etc_mounts(write_etc_files(state_dir, hostname, host_net))
    pts_gid = 5 if mapping.maps_gid(5) and mapping.mode != "single" else None
    cfg.mounts = (
        list(opts.pre_ops)
        + mounts.base_mounts(not host_net, pts_gid)
        + (mounts.fakeroot_mounts() if opts.fakeroot else [])
        + etc_ops
        + _device_mounts(opts, cfg)
        + mounts.volume_mounts(volumes)
        + mounts.tmpfs_mounts(opts.tmpfs)
    )
    cfg.cwd = opts.workdir or "/"
    cfg.uid, cfg.gid = user.uid, user.gid
    if mapping.setgroups:
        cfg.groups = [g for g in user.groups if mapping.maps_gid(g)]
    cfg.hostname = hostname
    flags = SF_NO_NEW_PRIVS | (SF_SETGROUPS if mapping.setgroups else 0)
    flags |= SF_NEWNET if not host_net else 0
    flags |= SF_READONLY_ROOT if opts.read_only else 0
    flags |= SF_INIT if opts.init else 0
    if opts.linger:
        from rootless.native.spawn import SF_LINGER

        flags |= SF_INIT | SF_LINGER
    if opts.seccomp:
        from rootless.native.spawn import SF_SECCOMP

        flags |= SF_SECCOMP
    if opts.fakeroot:
        from rootless.native.spawn import SF_FAKEROOT

        flags |= SF_FAKEROOT
        if not any(e.startswith("APT_CONFIG=") for e in cfg.env):
            cfg.env.append("APT_CONFIG=" + mounts.APT_CONFIG_PATH)
    if opts.tty:
        from rootless.runtime.tty import window_size

        flags |= SF_TTY
        cfg.tty_rows, cfg.tty_cols = window_size(0 if os.isatty(0) else 1)
    cfg.sflags = flags
    if TIMINGS is not None:
        TIMINGS.phase("rootfs setup")
    return cfg, mapping, state_dir


def _device_mounts(opts: RunOptions, cfg: object) -> list[MountOp]:
    """--gpus and --device: their mount ops; their variables go into cfg.env."""
    if not opts.gpus and not opts.devices:
        return []
    from rootless.runtime import gpu

    plan = gpu.plan(opts.gpus, opts.devices)
    cfg.env = gpu.merge_env(cfg.env, plan.env)  # type: ignore[attr-defined]
    return plan.ops


def _start_early(opts: RunOptions) -> tuple[object, idmap.Pending] | None:
    """With subordinate ids, clone first and let newuidmap/newgidmap (setuid helpers,
    a few ms) run while Python prepares the rest."""
    if opts.init or os.getuid() == 0:
        return None
    mapping = idmap.plan(opts.keep_id and opts.user is None)
    if mapping.mode != "full":
        return None
    from rootless.native import spawn as native_spawn

    child = native_spawn.spawn_early(native_spawn.SF_NEWNET if opts.network != "host" else 0)
    try:
        return child, idmap.start(mapping, child.pid)
    except BaseException:
        _discard(child)
        raise


def _discard(child: object) -> None:
    child.abort()  # type: ignore[attr-defined]
    wait_exit_code(child.pid)  # type: ignore[attr-defined]
    child.release()  # type: ignore[attr-defined]


def run(opts: RunOptions) -> int:
    """Run the container in the foreground; return its exit status."""
    from rootless.native import NativeError
    from rootless.native import spawn as native_spawn

    forwarder = SignalForwarder()
    state_dir = ""
    # Opened before any clone: the child gets a copy of our fd table at clone time.
    devnull = -1
    if not opts.interactive and not opts.tty:
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            early = _start_early(opts)
        except NativeError as exc:
            raise native_to_user_error(exc, opts.argv[0]) from exc
        if early is not None:
            forwarder.pid = early[0].pid  # type: ignore[attr-defined]
        try:
            cfg, mapping, state_dir = prepare(opts)
        except BaseException:
            if early is not None:
                try:
                    idmap.finish(early[1])
                except RootlessError:
                    pass
                _discard(early[0])
            raise
        if devnull >= 0:
            cfg.stdio = (devnull, 1, 2)  # type: ignore[attr-defined]
        if opts.fakeroot:
            # In the foreground we can supervise: record the owners chown asks for.
            cfg.sflags |= native_spawn.SF_FAKEROOT_RECORD  # type: ignore[attr-defined]
        try:
            if early is None:
                child = native_spawn.spawn(cfg)  # type: ignore[arg-type]
            else:
                child = early[0]  # type: ignore[assignment]
                native_spawn.configure(child, cfg)  # type: ignore[arg-type]
        except NativeError as exc:
            raise native_to_user_error(exc, opts.argv[0]) from exc
        forwarder.pid = child.pid
        try:
            if early is None:
                idmap.apply(mapping, child.pid)
            else:
                idmap.finish(early[1])
            if TIMINGS is not None:
                TIMINGS.phase("namespace setup")
            child.resume()
            if TIMINGS is not None:
                TIMINGS.phase("exec")
            if child.notify_fd >= 0:
                from rootless.runtime import ownrecord

                ownrecord.start(child.notify_fd)
            if opts.on_started is not None:
                opts.on_started(child.pid)  # type: ignore[operator]
            if opts.plan is not None and (not state_dir or opts.plan_container is not None):
                _write_plan(opts, cfg, mapping)
        except BaseException as exc:
            _discard(child)
            if isinstance(exc, NativeError):
                raise native_to_user_error(exc, opts.argv[0]) from exc
            raise
        if opts.tty:
            from rootless.runtime.tty import relay

            try:
                relay(child.pty_fd, opts.interactive)
            finally:
                os.close(child.pty_fd)
        status = wait_exit_code(child.pid)
    finally:
        if devnull >= 0:
            os.close(devnull)
        forwarder.restore()
        _remove_state(state_dir)
    return status


def _write_plan(opts: RunOptions, cfg: object, mapping: idmap.IdMapping) -> None:
    """Record this run for the native launcher (rootless.runtime.plan), unless it
    printed a warning (a planned run would not) or depends on what a plan cannot
    check."""
    from rootless.runtime import plan

    if log.WARNED or TIMINGS is not None:
        return
    helpers = None
    if mapping.mode == "full":
        uidmap, gidmap = idmap.find_helper("newuidmap"), idmap.find_helper("newgidmap")
        if uidmap is None or gidmap is None:
            return
        helpers = (uidmap, gidmap)
    stamps = ["/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid", "/etc/hosts", "/etc/hostname",
              "/etc/resolv.conf", *(helpers or ()), *opts.env_files,
              *(plan.IDENTITY + parse_volume(v).source for v in opts.volumes), *plan.package_files()]
    container = opts.plan_container
    if container is None:
        rootfs = cfg.rootfs  # type: ignore[attr-defined]
        inside = [os.path.join(rootfs, "etc", name) for name in ("passwd", "group")]
        if any(os.path.islink(p) for p in inside):
            return  # resolved inside the root: a host-side stamp would not follow it
        stamps += [plan.IDENTITY + rootfs, *inside]
    else:
        stamps += container.stamps()  # type: ignore[attr-defined]
    request = opts.plan
    assert isinstance(request, plan.Request)
    # A shape plan when the command came from the command line: it then serves any
    # command after the same options (a batch job's runs differ in their arguments).
    k = plan.shape_of(request, cfg.argv, opts.plan_command)  # type: ignore[attr-defined]
    key, path, tail = (request.shape_keys[k], plan.shape_path(request, k), len(opts.plan_command)) if k \
        else (request.key, request.path, 0)
    data = plan.encode(key, cfg, mapping, opts.interactive, stamps, helpers,  # type: ignore[arg-type]
                       container, tail, dash_is_option=container is None,  # type: ignore[arg-type]
                       env_hash=request.env_hash)
    plan.write(request, data, path)


def _remove_state(state_dir: str) -> None:
    if not state_dir or not os.path.basename(state_dir).startswith("run-"):
        return
    for name in ("hosts", "hostname", "resolv.conf"):
        try:
            os.unlink(os.path.join(state_dir, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(state_dir)
    except OSError:
        pass
