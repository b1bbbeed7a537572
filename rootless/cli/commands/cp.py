"""`rootless cp`: copy files between a container and the host."""

from __future__ import annotations

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "cp",
    "Copy files/folders between a container and the local filesystem.",
    "CONTAINER:SRC_PATH DEST_PATH | SRC_PATH CONTAINER:DEST_PATH",
    [Opt("--archive,-a", FLAG, "accepted for docker compatibility (modes and times are always kept)")],
    description="""\
Paths in the container are resolved inside its root: symlinks (also absolute
ones, and "..") never lead out of it. SRC_PATH ending in "/." copies the
directory's content. Files copied in belong to the container's root user.""",
    examples="  rootless cp mybox:/etc/os-release .\n  rootless cp ./app mybox:/srv/\n",
    stop_at_positional=False,
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.overlay.copy import Endpoint, cp, parse_arg

    if len(p.args) != 2:
        raise UsageError("\"rootless cp\" requires exactly 2 arguments\nSee 'rootless cp --help'.")
    (sc, sp), (dc, dp) = parse_arg(p.args[0]), parse_arg(p.args[1])
    if (sc is None) == (dc is None):
        raise UsageError("must specify exactly one container path: CONTAINER:PATH",
                         hint="copying between two containers or two host paths is not supported")
    if "-" in (sp, dp):
        raise UsageError("copying a tar stream from or to standard input/output is not supported yet")
    c = _common.store(ctx).get(str(sc or dc))
    if not (sp if sc else dp):
        raise UsageError("the container path is empty: use CONTAINER:/path")
    cp(c, Endpoint(sp, sc is not None), Endpoint(dp, dc is not None))
    return 0
