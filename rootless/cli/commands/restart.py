"""`rootless restart`: stop and start the same container (id, name and changes kept)."""

from __future__ import annotations

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "restart",
    "Restart containers: the same container, with its id, name and changes.",
    "[OPTIONS] CONTAINER [CONTAINER...]",
    [Opt("--time,-t", VALUE, "seconds to wait before killing", metavar="N", default="10")],
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime import lifecycle

    def restart(c: object) -> None:
        lifecycle.stop(c, float(p.time))  # type: ignore[arg-type, attr-defined]
        lifecycle.start(c)  # type: ignore[arg-type]

    return _common.each(ctx, p.args, restart, "restart")
