"""Per-layer progress lines on a terminal, like docker's:

    latest: Pulling from library/busybox
    a1b2c3d4e5f6: Downloading [=====>          ]  1.2MB/3.4MB
    0f1e2d3c4b5a: Pull complete
    Digest: sha256:...
    Status: Downloaded newer image for busybox:latest

Lines are redrawn in place with ANSI cursor movement, at most ten times a second
per layer. `make_progress(quiet)` returns a silent reporter when stderr is not a
terminal or when -q was given. Shared by pull now, push and build later.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from rootless.cli.output import human_size

if TYPE_CHECKING:
    from rootless.image.reference import Reference

BAR_WIDTH = 40


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def bar(current: int, total: int) -> str:
    if total <= 0:
        return human_size(current)
    frac = min(1.0, current / total)
    filled = int(frac * BAR_WIDTH)
    arrow = ">" if filled < BAR_WIDTH else ""
    body = "=" * max(0, filled - (1 if arrow else 0)) + arrow
    return f"[{body:<{BAR_WIDTH}}] {human_size(current):>7}/{human_size(total)}"


class TerminalProgress:
    """Renders layer lines on a terminal (thread-safe)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.rows: list[str] = []
        self.text: dict[str, str] = {}
        self.last: dict[str, float] = {}

    def begin(self, ref: Reference) -> None:
        with self.lock:
            self.out.write(f"{ref.identifier}: Pulling from {ref.repository}\n")
            self.out.flush()

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None:
        key = short(digest)
        line = f"{key}: {status}"
        if status == "Downloading":
            line += " " + bar(current, total)
        with self.lock:
            now = time.monotonic()
            if status == "Downloading" and now - self.last.get(key, 0.0) < 0.1:
                return
            self.last[key] = now
            self._draw(key, line)

    def _draw(self, key: str, line: str) -> None:
        if key not in self.text:
            self.rows.append(key)
            self.text[key] = line
            self.out.write(line + "\n")
        else:
            self.text[key] = line
            up = len(self.rows) - self.rows.index(key)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
        self.out.flush()

    def end(self, ref: Reference, digest: str, downloaded: bool) -> None:
        status = (
            f"Downloaded newer image for {ref.familiar()}"
            if downloaded
            else f"Image is up to date for {ref.familiar()}"
        )
        with self.lock:
            self.out.write(f"Digest: {digest}\nStatus: {status}\n")
            self.out.flush()


def make_progress(quiet: bool, out: TextIO | None = None) -> object:
    """A progress reporter for pull: TerminalProgress on a TTY, else silent."""
    stream = out or sys.stderr
    if quiet or os.environ.get("TERM") == "dumb" or not stream.isatty():
        from rootless.image.pull import NoProgress

        return NoProgress()
    return TerminalProgress(stream)
