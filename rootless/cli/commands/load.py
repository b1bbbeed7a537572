"""`rootless load`: load images from a docker-archive or oci-archive."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.image.archive import LoadProgress

COMMAND = Command(
    "load",
    "Load images from a tar archive (docker-archive or oci-archive).",
    "[OPTIONS]",
    [
        Opt("--input,-i", VALUE, "read from a file instead of standard input", metavar="FILE"),
        Opt("--quiet,-q", FLAG, "no progress output"),
    ],
    description="""\
Archives written by `docker save`, `podman save` (docker-archive or oci-archive),
`skopeo copy ... docker-archive:/oci-archive:` and `rootless save` are accepted,
also gzip-, zstd-, xz- or bzip2-compressed. Each loaded image is printed.""",
    examples="  rootless load -i busybox.tar\n  gunzip -c app.tar.gz | rootless load\n",
)


def main(ctx: Context, parsed: Parsed) -> int:
    if parsed.args:
        raise UsageError("\"rootless load\" accepts no arguments\nSee 'rootless load --help'.")
    from rootless.image.archive import load
    from rootless.image.reference import Reference
    from rootless.store import Store

    path = str(parsed.get("input") or "-")
    progress = _progress(bool(parsed.get("quiet")))
    store = Store.open(ctx.root)
    for image in load(store, path, progress):
        if not image.names:
            sys.stdout.write(f"Loaded image ID: {image.id}\n")
        for name in image.names:
            sys.stdout.write(f"Loaded image: {Reference.parse(name).familiar()}\n")
    return 0


def _progress(quiet: bool) -> LoadProgress | None:
    from rootless.cli.transfer_progress import make_transfer_progress

    return make_transfer_progress(quiet)
