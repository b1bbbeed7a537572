"""`rootless import`: make a one-layer image from a root filesystem tarball."""

from __future__ import annotations

import sys

from rootless.cli.args import VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "import",
    "Create an image from a root filesystem tarball.",
    "[OPTIONS] TARBALL|- [REPOSITORY[:TAG]]",
    [
        _common.CHANGE_OPT,
        Opt("--message,-m", VALUE, "commit message for the image history", metavar="MSG"),
    ],
    description="""\
The tarball may be plain or gzip-, zstd-, xz- or bzip2-compressed; `-` reads it
from standard input. The image ID is printed.""",
    examples="  rootless import rootfs.tar.gz myimage:1\n"
    "  tar -C rootfs -c . | rootless import -c 'CMD [\"/bin/sh\"]' - myimage\n",
    stop_at_positional=False,
)


def main(ctx: Context, parsed: Parsed) -> int:
    if not 1 <= len(parsed.args) <= 2:
        raise UsageError(
            "\"rootless import\" requires 1 or 2 arguments\nSee 'rootless import --help'."
        )
    if parsed.args[0].startswith(("http://", "https://")):
        raise UsageError("importing from a URL is not supported: download the tarball first")
    from rootless.image.importer import import_tarball
    from rootless.store import Store

    changes = [str(c) for c in parsed.get("change") or []]  # type: ignore[attr-defined]
    name = parsed.args[1] if len(parsed.args) == 2 else None
    store = Store.open(ctx.root)
    result = import_tarball(store, parsed.args[0], name, changes, str(parsed.get("message") or ""))
    sys.stdout.write(result.id + "\n")
    return 0
