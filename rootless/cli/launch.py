"""What the `rootless` command (csrc/launcher/main.c) runs when it needs Python:
`python -P -c "from rootless.cli.launch import main; main()" ARGS...`."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.runtime.plan import Request

# Set when the launcher asked for a run plan (rootless.runtime.plan); `run` writes it.
PLAN_REQUEST: Request | None = None


def main() -> None:
    global PLAN_REQUEST
    if "ROOTLESS_PLAN_OUT" in os.environ:  # plan.OUT_ENV, spelled out: most commands never import plan
        from rootless.runtime.plan import take_request

        PLAN_REQUEST = take_request(sys.argv[1:])
    from rootless.cli.main import main as cli_main

    code = cli_main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Skip the interpreter's teardown (~2-3 ms): every command has finished its work
        # (threads joined, files closed) when main() returns.
        os._exit(code)
