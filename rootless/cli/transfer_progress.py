"""Per-item progress bars for load, save and push (on a terminal only).

`TransferProgress` is pull's `TerminalProgress` with a bar for any status that
carries a total ("Loading layer", "Pushing"), and free-form header lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from rootless.cli.progress import TerminalProgress, bar, short


class TransferProgress(TerminalProgress):
    """Thread-safe layer lines; `note(text)` prints a plain line."""

    def note(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None:
        key = short(digest)
        moving = total > 0 and current < total
        line = f"{key}: {status}" + (" " + bar(current, total) if moving else "")
        with self.lock:
            now = time.monotonic()
            if moving and now - self.last.get(key, 0.0) < 0.1:
                return
            self.last[key] = now
            self._draw(key, line)


def make_transfer_progress(quiet: bool, out: TextIO | None = None) -> TransferProgress | None:
    """A TransferProgress on a terminal (stderr), else None."""
    stream = out or sys.stderr
    if quiet or os.environ.get("TERM") == "dumb" or not stream.isatty():
        return None
    return TransferProgress(stream)
