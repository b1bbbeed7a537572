"""`rootless rm`: remove containers."""

from __future__ import annotations

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "rm",
    "Remove containers (a running one only with --force).",
    "[OPTIONS] CONTAINER [CONTAINER...]",
    [Opt("--force,-f", FLAG, "kill a running container first"),
     Opt("--volumes,-v", FLAG, "accepted for docker compatibility (anonymous volumes go with the container)")],
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime import lifecycle

    return _common.each(ctx, p.args, lambda c: lifecycle.remove(c, bool(p.force)), "rm")  # type: ignore[attr-defined]
