"""`rootless history`: show the history of an image."""

from __future__ import annotations

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.store import ImageRecord, Store

COMMAND = Command(
    "history",
    "Show the history of an image.",
    "[OPTIONS] IMAGE",
    [
        Opt("--no-trunc", FLAG, "do not truncate output"),
        Opt("--quiet,-q", FLAG, "only show image IDs"),
        Opt(
            "--human,-H",
            FLAG,
            "sizes and dates in human readable format (default true)",
            default=True,
        ),
        Opt(
            "--format",
            VALUE,
            "json, or a Go template (fields: ID, CreatedAt, CreatedSince, "
            "CreatedBy, Size, Comment)",
            metavar="FORMAT",
        ),
    ],
)


def history_rows(
    store: Store, image: ImageRecord, *, no_trunc: bool, human: bool
) -> list[dict[str, object]]:
    from rootless.cli.commands.images import created_epoch
    from rootless.cli.output import ago, human_size

    sizes = []
    for diff_id in image.diff_ids:
        info = store.layers.info(diff_id)
        sizes.append(info.size if info else 0)
    entries = list(image.config.history)
    rows: list[dict[str, object]] = []
    layer = 0
    for h in entries:
        size = 0
        if not h.empty_layer and layer < len(sizes):
            size = sizes[layer]
            layer += 1
        when = created_epoch(h.created)
        by = h.created_by
        if not no_trunc and len(by) > 45:
            by = by[:44] + "…"
        rows.append(
            {
                "ID": "<missing>",
                "CreatedAt": h.created,
                "CreatedSince": (ago(when) if human else h.created) if when is not None else "N/A",
                "CreatedBy": by,
                "Size": human_size(size) if human else str(size),
                "Comment": h.comment,
            }
        )
    rows.reverse()
    if rows:
        rows[0]["ID"] = image.id if no_trunc else image.short_id
    return rows


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 1:
        raise UsageError('"rootless history" requires exactly 1 argument')
    from rootless.cli.output import emit
    from rootless.store import Store

    store = Store.open(ctx.root, create=False)
    image = store.image(parsed.args[0])
    rows = history_rows(
        store, image, no_trunc=bool(parsed.get("no_trunc")), human=bool(parsed.get("human"))
    )
    headers = [
        ("IMAGE", "ID"),
        ("CREATED", "CreatedSince"),
        ("CREATED BY", "CreatedBy"),
        ("SIZE", "Size"),
        ("COMMENT", "Comment"),
    ]
    emit(rows, parsed.get("format"), headers, quiet_field="ID", quiet=bool(parsed.get("quiet")))  # type: ignore[arg-type]
    return 0
