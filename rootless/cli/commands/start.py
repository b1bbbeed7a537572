"""`rootless start`: start stopped containers."""

from __future__ import annotations

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "start",
    "Start one or more stopped containers (the same container: its changes are kept).",
    "[OPTIONS] CONTAINER [CONTAINER...]",
    [Opt("--attach,-a", FLAG, "attach to the container's output (and its exit status)"),
     Opt("--interactive,-i", FLAG, "attach stdin too")],
    examples="  rootless start -ai my_container   # back into an exited interactive shell",
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime import lifecycle

    if p.attach or p.interactive:  # type: ignore[attr-defined]
        from rootless.cli.commands.run import attach_started

        c = _common.one(ctx, p.args, "start --attach")
        run = c.config["run"]
        return attach_started(c, bool(run["tty"]), bool(p.interactive) and bool(run["interactive"]))  # type: ignore[index, attr-defined]
    return _common.each(ctx, p.args, lambda c: None if c.status().running else lifecycle.start(c), "start")
