"""`rootless rmi`: remove images (untag, or delete like docker)."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.errors import RootlessError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.store import Store

COMMAND = Command(
    "rmi",
    "Remove one or more images.",
    "[OPTIONS] IMAGE [IMAGE...]",
    [Opt("--force,-f", FLAG, "remove even when containers use it or it has several names")],
    description="""\
A name of an image that has other names is only untagged. An image that any
container uses (even an exited one) is kept unless -f is given.""",
    stop_at_positional=False,
)


def _show(kind: str, value: str) -> str:
    if kind == "Untagged":
        from rootless.image.reference import Reference

        return f"Untagged: {Reference.parse(value).familiar()}"
    return f"Deleted: {value}"


def refuse_read_only(store: Store, text: str) -> None:
    """An image that only a shared (read-only) store names cannot be removed."""
    from rootless.store import NoSuchImageError
    from rootless.store.stack import ReadOnlyStoreError

    if not store.shared:
        return
    try:
        store.resolve(text, store.index.entries())
        return  # the user's own: removable
    except NoSuchImageError:
        pass
    try:
        owner = store.locate(text)[0]
    except NoSuchImageError:
        return  # remove_image says so
    if owner.read_only:
        raise ReadOnlyStoreError(
            f"image {text} is in the read-only image store {owner.root} and cannot be removed",
            hint="only your own names of it can be; its store's owner can remove it",
        )


def main(ctx: Context, parsed: Parsed) -> int:
    if not parsed.args:
        raise UsageError(
            "\"rootless rmi\" requires at least 1 argument\nSee 'rootless rmi --help'."
        )
    from rootless.store import Store
    from rootless.store.gc import collect, removal_lock, remove_image

    store = Store.open(ctx.root, create=False)
    failed = 0
    removed = False
    with removal_lock(store) as exclusive:
        for text in parsed.args:
            try:
                refuse_read_only(store, text)
                for kind, value in remove_image(store, text, force=bool(parsed.get("force"))):
                    sys.stdout.write(_show(kind, value) + "\n")
                    removed = True
            except RootlessError as exc:
                sys.stdout.flush()
                msg = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
                sys.stderr.write(f"rootless: {msg}\n")
                failed += 1
        if removed and exclusive:
            collect(store)
    return 125 if failed else 0
