"""`rootless diff`: the files a container added (A), changed (C) and deleted (D)."""

from __future__ import annotations

import sys

from rootless.cli.args import Command, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "diff",
    "Inspect changes to files or directories on a container's filesystem.",
    "CONTAINER",
    [],
    description="Lines are 'A /path' (added), 'C /path' (changed) and 'D /path' (deleted).",
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.overlay.diff import changes

    c = _common.one(ctx, p.args, "diff")
    out = "".join(f"{ch}\n" for ch in changes(c))
    sys.stdout.write(out)
    return 0
