"""`rootless stop`: stop running containers."""

from __future__ import annotations

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "stop",
    "Stop running containers: SIGTERM (or the image's StopSignal), then SIGKILL after a grace period.",
    "[OPTIONS] CONTAINER [CONTAINER...]",
    [Opt("--time,-t", VALUE, "seconds to wait before killing", metavar="N", default="10")],
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime import lifecycle

    try:
        t = float(p.time)  # type: ignore[attr-defined]
    except ValueError:
        raise UsageError(f"invalid --time {p.time!r}: give seconds") from None  # type: ignore[attr-defined]
    return _common.each(ctx, p.args, lambda c: lifecycle.stop(c, t), "stop")
