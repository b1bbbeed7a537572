"""`rootless exec`: run a command in a running container."""

from __future__ import annotations

from rootless.cli.args import FLAG, LIST, VALUE, Command, Opt, Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "exec",
    "Run a command in a running container (its namespaces, its user and environment by default).",
    "[OPTIONS] CONTAINER COMMAND [ARG...]",
    [
        Opt("--interactive,-i", FLAG, "keep stdin open"),
        Opt("--tty,-t", FLAG, "allocate a pseudo-terminal"),
        Opt("--user,-u", VALUE, "run as this user (name or uid[:gid])", metavar="USER"),
        Opt("--env,-e", LIST, "set environment variables", metavar="KEY=VALUE"),
        Opt("--workdir,-w", VALUE, "working directory inside the container", metavar="DIR"),
        Opt("--detach,-d", FLAG, "not supported yet: run in the background"),
    ],
    examples="  rootless exec -it web sh\n  rootless exec -u nobody web id",
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.cli.commands._common import store
    from rootless.errors import UsageError
    from rootless.runtime.execute import ExecOptions, run_exec

    if len(p.args) < 2:
        raise UsageError("'rootless exec' requires a container and a command\nSee 'rootless exec --help'.")
    if p.detach:  # type: ignore[attr-defined]
        raise UsageError("exec --detach is not supported: use `rootless exec ... &` or run -d")
    c = store(ctx).get(p.args[0])
    opts = ExecOptions(list(p.args[1:]))
    opts.env = list(p.env)  # type: ignore[attr-defined]
    opts.user = p.user  # type: ignore[attr-defined]
    opts.workdir = p.workdir  # type: ignore[attr-defined]
    opts.interactive = bool(p.interactive)  # type: ignore[attr-defined]
    opts.tty = bool(p.tty)  # type: ignore[attr-defined]
    if opts.workdir is not None and not opts.workdir.startswith("/"):
        raise UsageError(f"the working directory {opts.workdir!r} must be an absolute path")
    return run_exec(c, opts)
