"""`rootless create`: create a container without starting it."""

from __future__ import annotations

import sys

from rootless.cli.args import Command, Parsed
from rootless.cli.commands import run as run_cmd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "create",
    "Create a new container (start it with `rootless start`).",
    "[OPTIONS] IMAGE|--rootfs DIR [COMMAND] [ARG...]",
    run_cmd.CONTAINER_OPTS,
    description=run_cmd.DESCRIPTION,
)


def main(ctx: Context, p: Parsed) -> int:
    c, _ = run_cmd.create_from_args(ctx, p, "create")
    sys.stdout.write(c.id + "\n")  # type: ignore[attr-defined]
    return 0
