"""`rootless tag`: give an image another name."""

from __future__ import annotations

from rootless.cli.args import Command, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "tag",
    "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.",
    "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
    [],
)


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 2:
        raise UsageError(
            "\"rootless tag\" requires exactly 2 arguments\nSee 'rootless tag --help'."
        )
    from rootless.store import Store, normalize_name

    src, dst = parsed.args
    target = normalize_name(dst)
    store = Store.open(ctx.root, create=False)
    entries = store.index.entries()
    digest = store.resolve(src, entries)
    entry = next(e for e in entries if e.digest == digest)
    store.index.add(digest, entry.media_type, entry.size, target, platform=entry.platform)
    return 0
