"""`rootless top`: the processes running in a container."""

from __future__ import annotations

import subprocess
import sys

from rootless.cli.args import Command, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command("top", "Show the processes running in a container (host view, like docker top).",
                  "CONTAINER [ps OPTIONS]", [])


def main(ctx: Context, p: Parsed) -> int:
    from rootless.errors import ContainerError
    from rootless.runtime.procs import container_pids

    c = _common.one(ctx, p.args[:1], "top")
    st = c.status()
    if not st.running:
        raise ContainerError(f"container {c.name} is not running")
    pids = container_pids(st.pid)
    fmt = p.args[1:] or ["-o", "user,pid,ppid,c,stime,tty,time,cmd"]
    proc = subprocess.run(["ps", *fmt, "-p", ",".join(map(str, pids))], capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode not in (0, 1):
        raise ContainerError(f"ps failed: {proc.stderr.strip()}")
    return 0
