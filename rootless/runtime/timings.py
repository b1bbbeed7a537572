"""`run --timings`: how long each start-up phase took, printed to stderr at exit.

Zero cost when off: nothing imports this module unless --timings is given; the
runner only tests its module global `runner.TIMINGS` for None. The phases, in order:

  image resolve     reference -> local image (pull if missing)
  rootfs setup      container record, overlay dirs, mount table, /etc files
  namespace setup   clone into new namespaces, write the id maps
  exec              mount table, pivot_root, execve of the command
  run               the command itself, until it exits
  total             from the parsed command line to the exit

A detached or monitored container is started in a forked monitor: it measures its
phases there and sends them back with its start report (see lifecycle.py).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Timings:
    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.phases: list[tuple[str, float]] = []

    def phase(self, name: str) -> None:
        """Close the phase `name` (everything since the previous mark)."""
        now = time.monotonic()
        self.phases.append((name, now - self.last))
        self.last = now

    def adopt(self, phases: object) -> None:
        """Take the phases a monitor measured (a JSON list of [name, seconds])."""
        if not isinstance(phases, list):
            return
        for item in phases:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], (int, float)):
                self.phases.append((str(item[0]), float(item[1])))
        self.last = time.monotonic()

    def report(self, out: TextIO | None = None) -> str:
        total = time.monotonic() - self.t0
        lines = ["rootless: timings (ms)"]
        lines += [f"  {name:<16} {secs * 1000:9.2f}" for name, secs in self.phases]
        lines.append(f"  {'total':<16} {total * 1000:9.2f}")
        text = "\n".join(lines) + "\n"
        stream = out if out is not None else sys.stderr
        stream.write(text)
        stream.flush()
        return text
