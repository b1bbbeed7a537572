"""`rootless logs`: print a container's output."""

from __future__ import annotations

import sys
import time

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "logs",
    "Print a container's output (kept by its monitor, also after it exited).",
    "[OPTIONS] CONTAINER",
    [
        Opt("--follow,-f", FLAG, "keep printing new output until the container stops"),
        Opt("--tail,-n", VALUE, "only the last N lines (or 'all')", metavar="N", default="all"),
        Opt("--timestamps,-t", FLAG, "prefix each line with its time"),
    ],
)


def _emit(line: bytes, timestamps: bool, partial: dict[str, bytes]) -> None:
    """One CRI record "<time> <stream> <F|P> <text>": F ends a line, P is a piece of
    one (a prompt, or a line longer than the monitor's buffer)."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return
    ts, stream, tag = parts[0], parts[1], parts[2]
    text = parts[3] if len(parts) == 4 else b""
    key = stream.decode()
    out = sys.stdout.buffer if stream == b"stdout" else sys.stderr.buffer
    if timestamps and key not in partial:
        out.write(ts + b" ")
    if tag == b"P":
        partial[key] = b""
        out.write(text)
    else:
        partial.pop(key, None)
        out.write(text + b"\n")
    out.flush()


def main(ctx: Context, p: Parsed) -> int:
    c = _common.one(ctx, p.args, "logs")
    tail = str(p.tail)  # type: ignore[attr-defined]
    if tail != "all" and not tail.isdigit():
        raise UsageError(f"invalid --tail {tail!r}: a number or 'all'")
    try:
        f = open(c.log_path, "rb")
    except FileNotFoundError:
        return 0
    partial: dict[str, bytes] = {}
    with f:
        lines = f.readlines()
        if tail != "all":
            lines = lines[-int(tail):] if int(tail) > 0 else []
        for line in lines:
            _emit(line, bool(p.timestamps), partial)  # type: ignore[attr-defined]
        if not p.follow:  # type: ignore[attr-defined]
            return 0
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    _emit(line + b"\n", bool(p.timestamps), partial)  # type: ignore[attr-defined]
                continue
            if not c.status().running:
                rest = f.read()
                for line in (pending + rest).split(b"\n"):
                    if line:
                        _emit(line + b"\n", bool(p.timestamps), partial)  # type: ignore[attr-defined]
                return 0
            time.sleep(0.05)
