"""`rootless run` and `rootless create`: run a command in a new container."""

from __future__ import annotations

import os
import sys

from rootless.cli.args import FLAG, LIST, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.runtime.imagesource import ContainerImage
    from rootless.runtime.runner import RunOptions

CONTAINER_OPTS = [
    Opt("--rootfs", VALUE, "use this directory as the root filesystem instead of an image", metavar="DIR"),
    Opt("--name", VALUE, "name of the container (default: a generated adjective_surname)", metavar="NAME"),
    Opt("--env,-e", LIST, "set an environment variable (KEY=VALUE, or KEY to copy it from here)",
        metavar="KEY=VALUE"),
    Opt("--env-file", LIST, "read environment variables from a file, one KEY=VALUE a line", metavar="FILE"),
    Opt("--workdir,-w", VALUE, "working directory inside the container (created if missing)", metavar="DIR"),
    Opt("--user,-u", VALUE, "run as this user: name or uid, with an optional :group or :gid",
        metavar="USER[:GROUP]"),
    Opt("--volume,-v", LIST, "bind-mount a host path; 'ro' makes it read-only", metavar="SRC:DST[:ro]"),
    Opt("--tmpfs", LIST, "mount a fresh tmpfs at this path", metavar="DST[:OPTIONS]"),
    Opt("--hostname", VALUE, "container host name (default: the host's with --network host)", metavar="NAME"),
    Opt("--read-only", FLAG, "mount the root filesystem read-only"),
    Opt("--network,--net", VALUE, "host: share the host network (default); none: only loopback",
        metavar="MODE", default="host", choices=("host", "none")),
    Opt("--userns", VALUE, "keep-id: run as your own uid/gid inside the container", metavar="MODE",
        choices=("keep-id", "auto", "")),
    Opt("--entrypoint", VALUE, "override the image's entrypoint", metavar="CMD"),
    Opt("--interactive,-i", FLAG, "keep stdin open and pass it to the container"),
    Opt("--tty,-t", FLAG, "allocate a pseudo-terminal"),
    Opt("--init", FLAG, "run a tiny init as PID 1 that reaps zombies and forwards signals"),
    Opt("--fakeroot", FLAG, "root emulation: chown, setuid and device mknod succeed as no-ops "
        "(for package managers without subordinate ids)"),
    Opt("--security-opt", LIST, "seccomp=unconfined turns off the default seccomp profile "
        "(which blocks the kernel keyring, bpf, perf_event_open, userfaultfd, kexec, modules, "
        "acct, swap, reboot, syslog)", metavar="OPT"),
    Opt("--pull", VALUE, "pull the image: missing (default), always or never", metavar="POLICY",
        default="missing", choices=("missing", "always", "never")),
    Opt("--platform", VALUE, "platform of the image to pull, e.g. linux/arm64", metavar="OS/ARCH"),
    Opt("--tls-verify", FLAG, "verify the registry's TLS certificate (default true)", default=True),
    Opt("--publish,-p", LIST, "ignored: containers share the host network", metavar="PORTS"),
    Opt("--env-host", FLAG, "pass the host's environment (less PATH, HOME, LD_* and session "
        "variables; see docs/hpc.md); -e also takes globs like 'SLURM_*'"),
    Opt("--home", FLAG, "bind your home directory at the same path and set HOME to it"),
    Opt("--gpus", VALUE, "NVIDIA GPUs: all, a count, or device=0,1 (devices, driver libraries "
        "and nvidia-smi are bound in)", metavar="GPUS"),
    Opt("--device", LIST, "add a host device node, or a CDI device (vendor.com/class=name)",
        metavar="/dev/X[:/dev/Y][:rwm]"),
]

RUN_OPTS = CONTAINER_OPTS + [
    Opt("--detach,-d", FLAG, "run in the background and print the container id"),
    Opt("--rm", FLAG, "remove the container when it exits"),
    Opt("--timings", FLAG, "print how long each start-up phase took, to stderr"),
    Opt("--sharens", FLAG, "share one container among the processes of a job on this node "
        "(MPI ranks under srun or mpirun, or every run with the same $ROOTLESS_SHARENS_KEY): "
        "the first starts it, the others join its namespaces, so shared-memory transports "
        "work; needs --rm"),
]

DESCRIPTION = """\
The container gets new user, mount, pid, ipc and uts namespaces (and a network
namespace with --network none). Ids are mapped automatically: with ranges in
/etc/subuid and /etc/subgid (and newuidmap/newgidmap installed) container root is
you and uids 1..N are your range; without them, one id (root, or --user's) is you.
The root filesystem is an image (pulled if missing) seen through a copy-on-write
overlay, a squashfs file made by `save --format squashfs` (an IMAGE that starts
with / or ., or an existing *.sqfs or *.squashfs file; mounted by squashfuse, never
written), or a directory given with --rootfs. `run --rm` in the foreground runs
without a monitor process, the fastest path for batch jobs: from the second
time, the same options (whatever the command after them) start the container
from a plan cached in C, without Python (docs/architecture.md, "Run plans";
$ROOTLESS_PLAN_CACHE=0 turns that off).
Exit status: the command's own; 125 if rootless failed, 126 if the command cannot
be executed, 127 if it was not found."""

COMMAND = Command(
    "run",
    "Run a command in a new container.",
    "[OPTIONS] IMAGE|--rootfs DIR [COMMAND] [ARG...]",
    RUN_OPTS,
    description=DESCRIPTION,
    examples="""\
  rootless run --rm -it debian bash
  rootless run -d --name web busybox httpd -f -p 8080
  rootless run --rm --rootfs ./rootfs sh -c 'id; hostname'
  echo hi | rootless run --rm -i --rootfs ./rootfs cat
  rootless run --rm -v $PWD:/data:ro -w /data --rootfs ./rootfs ls""",
)


def options_from(p: Parsed, argv: list[str], rootfs: str, ctx: Context) -> RunOptions:
    from rootless.runtime.runner import RunOptions

    opts = RunOptions(rootfs, argv)
    opts.env = list(p.env)  # type: ignore[attr-defined]
    opts.env_files = [os.path.abspath(f) for f in p.env_file]  # type: ignore[attr-defined]
    opts.workdir = p.workdir  # type: ignore[attr-defined]
    opts.user = p.user  # type: ignore[attr-defined]
    opts.volumes = list(p.volume)  # type: ignore[attr-defined]
    opts.tmpfs = list(p.tmpfs)  # type: ignore[attr-defined]
    opts.hostname = p.hostname  # type: ignore[attr-defined]
    opts.read_only = bool(p.read_only)  # type: ignore[attr-defined]
    opts.network = str(p.network)  # type: ignore[attr-defined]
    opts.interactive = bool(p.interactive)  # type: ignore[attr-defined]
    opts.tty = bool(p.tty)  # type: ignore[attr-defined]
    opts.init = bool(p.init)  # type: ignore[attr-defined]
    opts.keep_id = p.userns == "keep-id"  # type: ignore[attr-defined]
    opts.fakeroot = bool(p.fakeroot)  # type: ignore[attr-defined]
    for sec in p.security_opt:  # type: ignore[attr-defined]
        if sec in ("seccomp=unconfined", "seccomp:unconfined"):
            opts.seccomp = False
        elif not sec.startswith(("label=", "label:", "no-new-privileges", "apparmor=")):
            raise UsageError(f"unsupported --security-opt {sec!r}: rootless knows seccomp=unconfined")
    if opts.workdir is not None and not opts.workdir.startswith("/"):
        raise UsageError(f"the working directory {opts.workdir!r} must be an absolute path")
    opts.runroot = ctx.runroot
    hpc = p.env_host or p.home or p.gpus or p.device  # type: ignore[attr-defined]
    if hpc or any("*" in e or "?" in e for e in opts.env):
        _hpc_options(p, opts)
    # validate volumes now: a bad spec fails at create, not at start
    from rootless.runtime.runner import parse_volume

    vols = [parse_volume(v) for v in opts.volumes]
    if opts.workdir is None and (opts.home or any(v.source == v.target for v in vols)):
        # the current directory, when it is bound at the same path (apptainer's rule)
        from rootless.runtime.hpcenv import default_workdir

        binds = [(v.source, v.target) for v in vols] + ([(opts.home, opts.home)] if opts.home else [])
        opts.workdir = default_workdir(binds)
    return opts


def _hpc_options(p: Parsed, opts: RunOptions) -> None:
    """--env-host, -e GLOB, --home, --gpus, --device (resolved now, persisted as values)."""
    from rootless.runtime import hpcenv

    if p.env_host:  # type: ignore[attr-defined]
        opts.host_env = hpcenv.host_env()
    opts.env = hpcenv.expand_env(opts.env)
    if p.home:  # type: ignore[attr-defined]
        opts.home = hpcenv.home_dir()
    opts.gpus = p.gpus or None  # type: ignore[attr-defined]
    opts.devices = list(p.device)  # type: ignore[attr-defined]
    if opts.gpus or opts.devices:
        from rootless.runtime import gpu

        if opts.gpus:
            gpu.parse_gpus(opts.gpus)
        for d in opts.devices:
            if not gpu.CDI_NAME.match(d):
                gpu.parse_device(d)


def create_from_args(ctx: Context, p: Parsed, verb: str = "run") -> tuple[object, RunOptions]:
    """Create (but do not start) the container these options describe."""
    rootfs = p.get("rootfs")
    if isinstance(rootfs, str) and rootfs:
        return _create_from_args(ctx, p, verb)
    from rootless.runtime.containers import ImageUse

    with ImageUse(ctx.root):  # no rmi sweep between finding the image and naming it in config.json
        return _create_from_args(ctx, p, verb)


def _create_from_args(ctx: Context, p: Parsed, verb: str) -> tuple[object, RunOptions]:
    from rootless import log
    from rootless.runtime.containers import ContainerStore
    from rootless.runtime.create import apply_image_config, create_container

    rootfs = p.get("rootfs")
    args = list(p.args)
    image: ContainerImage | None = None
    if isinstance(rootfs, str) and rootfs:
        from rootless.runtime.runner import _check_rootfs

        _check_rootfs(rootfs)
    else:
        if not args:
            raise UsageError(f"'rootless {verb}' requires an image (or --rootfs DIR)\n"
                             f"See 'rootless {verb} --help'.")
        from rootless.runtime.imagesource import resolve

        from rootless.cli.commands.pull import _progress

        platform = p.get("platform")
        ref = args.pop(0)
        if ref.startswith(("/", ".")) or ref.endswith((".sqfs", ".squashfs")):
            from rootless.runtime import squashfs

            if squashfs.is_file_argument(ref):
                image = squashfs.open_image(ref, ctx.root)  # a single-file image
        if image is None:
            image = resolve(ctx.root, ref, str(p.pull),  # type: ignore[attr-defined]
                            platform if isinstance(platform, str) else None,
                            bool(p.tls_verify), lambda: _progress(False))  # type: ignore[attr-defined]
        from rootless.runtime.runner import TIMINGS

        if TIMINGS is not None:
            TIMINGS.phase("image resolve")
        if image.exposed_ports:
            log.info("ExposedPorts are ignored: containers share the host network")
    if p.publish:  # type: ignore[attr-defined]
        log.warning("-p/--publish is ignored: containers share the host network")
    opts = options_from(p, [], rootfs if isinstance(rootfs, str) else "", ctx)
    entrypoint = p.get("entrypoint")
    apply_image_config(opts, image, entrypoint if isinstance(entrypoint, str) else None, args)
    if not opts.argv:
        raise UsageError("no command given: pass one after the image or --rootfs DIR")
    store = ContainerStore(ctx.root, ctx.runroot)
    name = p.get("name")
    driver = "overlay"
    if image is not None:
        from rootless.runtime.storage import choose

        driver = choose(ctx.root, ctx.storage_driver)
    ephemeral = bool(p.get("rm")) and not p.get("detach")  # removed on exit: no fsync needed
    c = create_container(store, opts, name if isinstance(name, str) else None, image,
                         rootfs if isinstance(rootfs, str) and rootfs else None, driver,
                         durable=not ephemeral)
    return c, opts


def _fast_run(ctx: Context, p: Parsed) -> int:
    """`run --rm` in the foreground on a directory: no store, no monitor."""
    from rootless.runtime.runner import run

    argv = list(p.args)
    entrypoint = p.get("entrypoint")
    if isinstance(entrypoint, str) and entrypoint:
        argv = [entrypoint] + argv
    if not argv:
        raise UsageError("no command given: pass one after the options (e.g. `sh`)")
    opts = options_from(p, argv, str(p.rootfs), ctx)  # type: ignore[attr-defined]
    from rootless.cli import launch

    if launch.PLAN_REQUEST is not None and _plannable(opts):
        opts.plan = launch.PLAN_REQUEST
        opts.plan_command = list(p.args)
    return run(opts)


def _plannable_container(c: object, opts: RunOptions) -> bool:
    """A `run --rm IMAGE` on kernel overlayfs, without volumes the image declares
    (those are made per container by the Python CLI)."""
    own = c.dir + "/"  # type: ignore[attr-defined]
    return (c.config.get("rootfs_mode") == "overlay"  # type: ignore[attr-defined]
            and not any(v.startswith(own) for v in opts.volumes) and _plannable(opts))


def _plannable(opts: RunOptions) -> bool:
    """Whether the native launcher may repeat this run from a plan: not when the run
    needs Python watching it (a pty, fakeroot's chown records) or reads host state a
    plan cannot check (GPU driver files), nor with debug output or crash points."""
    from rootless import log

    return not (opts.tty or opts.fakeroot or opts.gpus or opts.devices or opts.linger
                or log.enabled("info") or "ROOTLESS_CRASH_AT" in os.environ)


def main(ctx: Context, p: Parsed) -> int:
    if not p.timings:  # type: ignore[attr-defined]
        return _main(ctx, p)
    from rootless.runtime import runner
    from rootless.runtime.timings import Timings

    runner.TIMINGS = t = Timings()
    code = _main(ctx, p)
    t.phase("run")
    t.report()
    return code


def _main(ctx: Context, p: Parsed) -> int:
    if p.sharens:  # type: ignore[attr-defined]
        return _run_sharens(ctx, p)
    rootfs = p.get("rootfs")
    if p.rm and not p.detach and isinstance(rootfs, str) and rootfs:  # type: ignore[attr-defined]
        return _fast_run(ctx, p)
    from rootless.runtime import lifecycle

    c, opts = create_from_args(ctx, p)
    if p.rm and not p.detach:  # type: ignore[attr-defined]
        from rootless.cli import launch

        name = p.get("name")
        # --pull always must ask the registry every time: no plan stands for that
        plan = launch.PLAN_REQUEST if p.pull != "always" else None  # type: ignore[attr-defined]
        return _run_rm_foreground(c, plan=plan, fixed_name=name if isinstance(name, str) else None,
                                  command=list(p.args)[1:])
    on_exit = remove_command(ctx, c.id) if p.rm else None  # type: ignore[attr-defined, attr-defined]
    if p.detach:  # type: ignore[attr-defined]
        lifecycle.start(c, attach=False, on_exit=on_exit)  # type: ignore[arg-type]
        sys.stdout.write(c.id + "\n")  # type: ignore[attr-defined]
        return 0
    return attach_started(c, opts.tty, opts.interactive, on_exit)


def _run_sharens(ctx: Context, p: Parsed) -> int:
    """`run --rm --sharens`: lead the job's shared container on this node, or join it."""
    from rootless.runtime import execute, idmap, runner, sharens, users

    if p.detach or not p.rm:  # type: ignore[attr-defined]
        raise UsageError("--sharens runs the processes of a job in the foreground: use it with --rm, "
                         "without -d")
    registry = sharens.Registry(ctx.runroot, sharens.job_key())
    rootfs = p.get("rootfs")
    entrypoint = p.get("entrypoint")
    image: ContainerImage | None = None
    if isinstance(rootfs, str) and rootfs:
        what = os.path.realpath(rootfs)
    else:
        args = list(p.args)
        if not args:
            raise UsageError("'rootless run' requires an image (or --rootfs DIR)\nSee 'rootless run --help'.")
        from rootless.runtime.imagesource import resolve

        from rootless.cli.commands.pull import _progress

        platform = p.get("platform")
        from rootless.runtime import squashfs

        if squashfs.is_file_argument(args[0]):
            image = squashfs.open_image(args[0], ctx.root)
            what = f"file {image.squashfs}"
        else:
            image = resolve(ctx.root, args[0], str(p.pull),  # type: ignore[attr-defined]
                            platform if isinstance(platform, str) else None,
                            bool(p.tls_verify), lambda: _progress(False))  # type: ignore[attr-defined]
            what = f"image {image.id[:12]}"
    keep_id = p.userns == "keep-id" and p.user is None  # type: ignore[attr-defined]
    mapping = idmap.plan(keep_id)

    def lead(started: object) -> int:
        if image is None:
            argv = list(p.args)
            if isinstance(entrypoint, str) and entrypoint:
                argv = [entrypoint] + argv
            opts = options_from(p, argv, str(rootfs), ctx)
            opts.init = opts.linger = True
            opts.on_started = started
            return runner.run(opts)
        c, _ = create_from_args(ctx, p)
        return _run_rm_foreground(c, shared_started=started)

    def join(entry: sharens.Entry, joined: object) -> int:
        if image is None:
            argv = list(p.args)
            if isinstance(entrypoint, str) and entrypoint:
                argv = [entrypoint] + argv
            opts = options_from(p, argv, str(rootfs), ctx)
        else:
            from rootless.runtime.create import apply_image_config

            opts = options_from(p, [], "", ctx)
            apply_image_config(opts, image, entrypoint if isinstance(entrypoint, str) else None,
                               list(p.args)[1:])
        if not opts.argv:
            raise UsageError("no command given: pass one after the image or --rootfs DIR")
        pid = execute.joinable_pid(entry.pid, entry.pidns)
        user = users.resolve(f"/proc/{pid}/root", opts.user)
        if opts.keep_id and opts.user is None:
            user.uid, user.gid = mapping.container_uid, mapping.container_gid
        host_net = opts.network == "host"
        hostname = opts.hostname or (os.uname().nodename if host_net else opts.container_id[:12])
        j = execute.Join(opts.argv, runner.build_env(opts, user, hostname), opts.workdir or "/", user)
        j.seccomp, j.fakeroot, j.setgroups = opts.seccomp, opts.fakeroot, mapping.setgroups
        j.tty, j.interactive = opts.tty, opts.interactive
        j.on_resumed = joined
        return execute.spawn_into(pid, j)

    return sharens.run_shared(registry, what, mapping.mode, lead, join)


def _run_rm_foreground(c: object, shared_started: object = None, plan: object = None,
                       fixed_name: str | None = None, command: list[str] | None = None) -> int:
    """`run --rm` in the foreground: this process is the container's parent (no
    monitor to start, no second process to remove it). The container is listed by
    `ps` and reachable by `exec`, `top` and `stats` while it runs; it has no log or
    attach socket. It is removed when it exits, also on error or signal."""
    import time

    from rootless.runtime import lifecycle, runner, state

    try:
        with c.lock():  # type: ignore[attr-defined]
            c.store.ensure_run_dir(c)  # type: ignore[attr-defined]
            if c.config.get("rootfs_mode") in ("overlay", "fuse-overlayfs"):  # type: ignore[attr-defined]
                for d in ("upper", "work", "merged"):
                    os.makedirs(c.path(d), mode=0o755, exist_ok=True)  # type: ignore[attr-defined]
            opts = lifecycle.run_options(c, ephemeral=True)  # type: ignore[arg-type]
            opts.runroot = os.path.dirname(c.store.run_dir)  # type: ignore[attr-defined]
            opts.state_dir = c.run_dir  # type: ignore[attr-defined]

            def started(pid: int) -> None:
                state.atomic_write_json(c.run_path("state.json"), {  # type: ignore[attr-defined]
                    "pid": pid, "pid_start": state.pid_start_time(pid), "monitor_pid": os.getpid(),
                    "monitor_start": state.pid_start_time(os.getpid()), "started_at": time.time()},
                    sync=False)

            opts.on_started = started  # type: ignore[attr-defined]
            if plan is not None and _plannable_container(c, opts):  # type: ignore[arg-type]
                from rootless.runtime.plan import ContainerPlan

                opts.plan = plan  # type: ignore[attr-defined]
                opts.plan_container = ContainerPlan(c, fixed_name)  # type: ignore[attr-defined, arg-type]
                opts.plan_command = command or []  # type: ignore[attr-defined]
            if shared_started is not None:
                opts.init = opts.linger = True  # type: ignore[attr-defined]

                def started_shared(pid: int) -> None:
                    started(pid)
                    shared_started(pid)  # type: ignore[operator]

                opts.on_started = started_shared  # type: ignore[attr-defined]
        return runner.run(opts)  # type: ignore[arg-type]
    finally:
        try:
            lifecycle.remove(c, force=True, stopped=True)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the command's status matters more
            from rootless import log

            log.warning(f"could not remove container {c.name}: {exc}")  # type: ignore[attr-defined]


def attach_started(c: object, tty: bool, interactive: bool, on_exit: list[str] | None = None) -> int:
    """Start `c` attached to this terminal; return its exit status (or 0 on detach)."""
    from rootless.runtime import lifecycle
    from rootless.runtime.attach import Session

    from rootless.runtime.runner import SignalForwarder

    forwarder = SignalForwarder()  # docker's sig-proxy: our signals go to the container
    try:
        sock = lifecycle.start(c, attach=True, on_exit=on_exit)  # type: ignore[arg-type]
        assert sock is not None
        forwarder.pid = c.status().pid  # type: ignore[attr-defined]
        code = Session(sock, tty, interactive).run()
        sock.close()
    finally:
        forwarder.restore()
    if code is None:
        return 0
    return code


def remove_command(ctx: Context, cid: str) -> list[str]:
    """What the monitor runs after the container exits, for --rm."""
    return [sys.executable, "-m", "rootless", "--root", ctx.root, "--runroot", ctx.runroot,
            "rm", "--force", cid]
