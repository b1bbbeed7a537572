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
    description="""\
The new name always goes into your own store. Tagging an image of a shared,
read-only store copies its manifest and config there; its layers stay shared.""",
)


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 2:
        raise UsageError(
            "\"rootless tag\" requires exactly 2 arguments\nSee 'rootless tag --help'."
        )
    from rootless.store import Store, normalize_name

    src, dst = parsed.args
    target = normalize_name(dst)
    store = Store.open(ctx.root)
    with store.lock(shared=True):  # no rmi sweep between finding the image and naming it
        owner, digest, entries = store.locate(src)
        entry = next(e for e in entries if e.digest == digest)
        if owner.read_only:
            # The name goes into the user's store, with copies of the (small) manifest
            # and config; the layers stay in the shared store.
            record = store.image(digest)
            for blob in (record.manifest_digest, record.config_digest):
                store.blobs.put(store.blobs.read(blob), blob)
        store.index.add(digest, entry.media_type, entry.size, target, platform=entry.platform)
    return 0
