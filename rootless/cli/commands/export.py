"""`rootless export`: a container's merged filesystem as a flat tar archive."""

from __future__ import annotations

import os
import sys

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "export",
    "Export a container's filesystem as a tar archive.",
    "[OPTIONS] CONTAINER",
    [Opt("--output,-o", VALUE, "write to a file instead of standard output", metavar="FILE")],
    description="""\
The archive is the merged view: the image's layers with the container's changes
applied (deleted files are absent), ownership as the container sees it.""",
    stop_at_positional=False,
)

CHUNK = 1 << 20


def _copy(r: int, out: int) -> None:
    while chunk := os.read(r, CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]


def main(ctx: Context, p: Parsed) -> int:
    from rootless.errors import RootlessError
    from rootless.overlay.export import spawn_pack

    c = _common.one(ctx, p.args, "export")
    dest = p.get("output")
    if dest is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to write a tar archive to a terminal",
                         hint="use -o FILE or redirect standard output")
    tmp = ""
    if dest is not None:
        dest = os.path.abspath(str(dest))
        tmp = f"{dest}.tmp-{os.getpid()}"
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644) if tmp else 1
    except OSError as exc:
        raise RootlessError(f"cannot write {dest}: {exc.strerror}") from None
    r, child = spawn_pack(c, merged=True)
    try:
        _copy(r, out)
    except BaseException:
        child.kill()
        raise
    finally:
        os.close(r)
        if tmp:
            os.close(out)
    try:
        child.wait()
        if tmp:
            os.rename(tmp, str(dest))
            tmp = ""
    finally:
        if tmp:
            os.unlink(tmp)
    return 0
