"""`rootless wait`: block until containers stop, then print their exit codes."""

from __future__ import annotations

import sys

from rootless.cli.args import Command, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command("wait", "Block until containers stop, then print their exit codes.",
                  "CONTAINER [CONTAINER...]", [])


def main(ctx: Context, p: Parsed) -> int:
    from rootless.errors import UsageError
    from rootless.runtime import lifecycle

    if not p.args:
        raise UsageError("'rootless wait' requires at least one container")
    s = _common.store(ctx)
    containers = [s.get(ref) for ref in p.args]
    for c in containers:
        st = lifecycle.wait_stopped(c, None)
        sys.stdout.write(f"{st.exit_code if st.exit_code is not None else -1}\n")
        sys.stdout.flush()
    return 0
