"""`rootless commit`: make a new image from a container's changes."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "commit",
    "Create a new image from a container's changes.",
    "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
    [
        Opt("--message,-m", VALUE, "commit message (shown by history)", metavar="MSG"),
        Opt("--author,-a", VALUE, 'author (e.g. "Jane Doe <jane@example.org>")', metavar="AUTHOR"),
        _common.CHANGE_OPT,
        Opt("--pause,-p", FLAG, "accepted for docker compatibility: a running container is "
            "read as it is"),
    ],
    description="""\
The new layer holds what the container added, changed and deleted (its upper
dir), with ownership as the container sees it. Works on running containers. The
new image ID is printed.""",
    examples="  rootless commit -m 'git installed' -c 'CMD [\"bash\"]' mybox debian-git:1\n",
    stop_at_positional=False,
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.runtime.commit import CommitOptions, commit
    from rootless.store import Store

    if not 1 <= len(p.args) <= 2:
        raise UsageError("\"rootless commit\" requires 1 or 2 arguments\nSee 'rootless commit --help'.")
    c = _common.store(ctx).get(p.args[0])
    opts = CommitOptions(
        name=p.args[1] if len(p.args) == 2 else None,
        message=str(p.get("message") or ""),
        author=str(p.get("author") or ""),
        changes=[str(x) for x in p.get("change") or []],  # type: ignore[attr-defined]
    )
    image_id = commit(Store.open(ctx.root), c, opts)
    sys.stdout.write(image_id + "\n")
    return 0
