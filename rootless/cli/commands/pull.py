"""`rootless pull`: fetch an image from a registry into the store."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.image.pull import Progress

COMMAND = Command(
    "pull",
    "Download an image from a registry.",
    "[OPTIONS] NAME[:TAG|@DIGEST]",
    [
        Opt("--quiet,-q", FLAG, "no progress output"),
        Opt(
            "--platform",
            VALUE,
            "platform of a multi-platform image, e.g. linux/arm64",
            metavar="OS/ARCH[/VARIANT]",
        ),
        _common.TLS_VERIFY_OPT,
        Opt("--jobs", VALUE, "layers downloaded at the same time", metavar="N", default="4"),
    ],
    description="""\
Layers download in parallel and are unpacked while they stream; layers already in
the store are not downloaded again. The image's full name is printed at the end.""",
    examples="  rootless pull busybox\n  rootless pull --platform linux/arm64 alpine:3.20\n",
)


def tls_option(value: object) -> bool | None:
    return None if value == "unset" else bool(value)


def _timeout() -> float | None:
    from rootless.image.pull import registry_timeout

    return registry_timeout()


def _progress(quiet: bool) -> Progress | None:
    if quiet or not sys.stderr.isatty():
        return None
    from rootless.cli.progress import make_progress

    return make_progress(quiet)  # type: ignore[return-value]


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 1:
        raise UsageError(
            "\"rootless pull\" requires exactly 1 argument\nSee 'rootless pull --help'."
        )
    jobs = str(parsed.get("jobs"))
    if not jobs.isdigit() or int(jobs) < 1:
        raise UsageError(f"invalid --jobs {jobs!r}: a positive number is needed")
    from rootless.image.pull import PullOptions, pull
    from rootless.store import Store

    options = PullOptions(
        platform=parsed.get("platform") or None,  # type: ignore[arg-type]
        tls_verify=tls_option(parsed.get("tls_verify")),
        jobs=int(jobs),
        progress=_progress(bool(parsed.get("quiet"))),
        timeout=_timeout(),
    )
    store = Store.open(ctx.root)
    result = pull(store, parsed.args[0], options)
    image = result.image
    shown = result.name or (image.repo_digests[0] if image.repo_digests else image.id)
    sys.stdout.write(shown + "\n")
    return 0
