"""`rootless run`: run a command in a new container."""

from __future__ import annotations

from rootless.cli.args import FLAG, LIST, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "run",
    "Run a command in a new container.",
    "[OPTIONS] --rootfs DIR COMMAND [ARG...]",
    [
        Opt("--rootfs", VALUE, "use this directory as the container's root filesystem", metavar="DIR"),
        Opt("--env,-e", LIST, "set an environment variable (KEY=VALUE, or KEY to copy it from here)",
            metavar="KEY=VALUE"),
        Opt("--env-file", LIST, "read environment variables from a file, one KEY=VALUE a line",
            metavar="FILE"),
        Opt("--workdir,-w", VALUE, "working directory inside the container (created if missing)",
            metavar="DIR"),
        Opt("--user,-u", VALUE, "run as this user: name or uid, with an optional :group or :gid",
            metavar="USER[:GROUP]"),
        Opt("--volume,-v", LIST, "bind-mount a host path; 'ro' makes it read-only",
            metavar="SRC:DST[:ro]"),
        Opt("--tmpfs", LIST, "mount a fresh tmpfs at this path", metavar="DST[:OPTIONS]"),
        Opt("--hostname,-h", VALUE, "container host name (default: the host's with --network host)",
            metavar="NAME"),
        Opt("--read-only", FLAG, "mount the root filesystem read-only"),
        Opt("--network,--net", VALUE, "host: share the host network (default); none: only loopback",
            metavar="MODE", default="host", choices=("host", "none")),
        Opt("--userns", VALUE, "keep-id: run as your own uid/gid inside the container", metavar="MODE",
            choices=("keep-id", "auto", "")),
        Opt("--entrypoint", VALUE, "run this program, with COMMAND as its arguments", metavar="CMD"),
        Opt("--interactive,-i", FLAG, "keep stdin open and pass it to the container"),
        Opt("--tty,-t", FLAG, "allocate a pseudo-terminal"),
        Opt("--init", FLAG, "run a tiny init as PID 1 that reaps zombies and forwards signals"),
        Opt("--rm", FLAG, "remove the container when it exits"),
        Opt("--name", VALUE, "name of the container", metavar="NAME"),
    ],
    description="""\
The container gets new user, mount, pid, ipc and uts namespaces (and a network
namespace with --network none). Ids are mapped automatically: with ranges in
/etc/subuid and /etc/subgid (and newuidmap/newgidmap installed) container root is
you and uids 1..N are your range; without them, one id (root, or --user's) is you.
Exit status: the command's own; 125 if rootless failed, 126 if the command cannot
be executed, 127 if it was not found.""",
    examples="""\
  rootless run --rootfs ./rootfs sh -c 'id; hostname'
  echo hi | rootless run -i --rootfs ./rootfs cat
  rootless run -it --rootfs ./rootfs sh
  rootless run -v $PWD:/data:ro -w /data --rootfs ./rootfs ls""",
)
# -h is --hostname for run (as in docker); --help still works.
COMMAND.by_name.pop("-h", None)
for _o in COMMAND.opts:
    if "-h" in _o.names:
        _o.names.remove("-h")


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime.runner import RunOptions, run

    rootfs = p.get("rootfs")
    if not isinstance(rootfs, str) or not rootfs:
        raise UsageError("run needs --rootfs DIR (running images comes with `rootless pull`)")
    argv = list(p.args)
    entrypoint = p.get("entrypoint")
    if isinstance(entrypoint, str) and entrypoint:
        argv = [entrypoint] + argv
    opts = RunOptions(rootfs, argv)
    opts.env = list(p.env)  # type: ignore[attr-defined]
    opts.env_files = list(p.env_file)  # type: ignore[attr-defined]
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
    if opts.workdir is not None and not opts.workdir.startswith("/"):
        raise UsageError(f"the working directory {opts.workdir!r} must be an absolute path")
    opts.runroot = ctx.runroot
    return run(opts)
