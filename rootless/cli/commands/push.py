"""`rootless push`: upload an image to a registry."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "push",
    "Upload an image to a registry.",
    "[OPTIONS] IMAGE [DESTINATION]",
    [
        Opt("--quiet,-q", FLAG, "no progress output"),
        _common.TLS_VERIFY_OPT,
    ],
    description="""\
`push NAME[:TAG]` uploads to the registry in the name; DESTINATION pushes under
another name (IMAGE may then be an image ID). Blobs the repository has are
skipped, blobs of the same registry are mounted from the repository the image
was pulled from, the rest is uploaded (in chunks of $ROOTLESS_PUSH_CHUNK_SIZE
bytes when set). The manifest is pushed unchanged, so the digest stays the same.""",
    examples="  rootless push registry.example.com/team/app:1\n"
    "  rootless push app:1 localhost:5000/app:1\n",
)


def main(ctx: Context, parsed: Parsed) -> int:
    if not 1 <= len(parsed.args) <= 2:
        raise UsageError("\"rootless push\" requires 1 or 2 arguments\nSee 'rootless push --help'.")
    from rootless.cli.commands.pull import _timeout, tls_option
    from rootless.cli.transfer_progress import make_transfer_progress
    from rootless.image.push import NoPushProgress, PushOptions, push
    from rootless.store import Store

    progress = make_transfer_progress(bool(parsed.get("quiet")))
    options = PushOptions(
        tls_verify=tls_option(parsed.get("tls_verify")),
        progress=progress if progress is not None else NoPushProgress(),
        timeout=_timeout(),
    )
    store = Store.open(ctx.root)
    dest = parsed.args[1] if len(parsed.args) == 2 else None
    result = push(store, parsed.args[0], dest, options)
    tag = result.reference.tag or "latest"
    sys.stdout.write(f"{tag}: digest: {result.digest} size: {result.size}\n")
    return 0
