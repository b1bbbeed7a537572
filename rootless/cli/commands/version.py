"""`rootless version`."""

from __future__ import annotations

import sys

from rootless.cli.args import VALUE, Command, Opt

COMMAND = Command(
    "version",
    "Show the rootless version and the version of its C core.",
    "[OPTIONS]",
    [Opt("--format,-f", VALUE, "output format: json", metavar="FORMAT")],
)


def main(ctx: object, p: object) -> int:
    from rootless import __version__
    from rootless.native import CORE_VERSION

    fmt = getattr(p, "format", None)
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps({"version": __version__, "core": CORE_VERSION}) + "\n")
    else:
        sys.stdout.write(f"rootless version {__version__} (C core {CORE_VERSION})\n")
    return 0
