"""`rootless kill`: send a signal to running containers."""

from __future__ import annotations

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.runtime.signals import parse_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "kill",
    "Send a signal (default SIGKILL) to running containers.",
    "[OPTIONS] CONTAINER [CONTAINER...]",
    [Opt("--signal,-s", VALUE, "signal name or number", metavar="SIG", default="KILL")],
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime import lifecycle

    sig = parse_signal(str(p.signal))  # type: ignore[attr-defined]
    return _common.each(ctx, p.args, lambda c: lifecycle.signal_container(c, sig), "kill")
