"""`rootless images`: list the images in the store."""

from __future__ import annotations

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.store import ImageRecord, Store

COMMAND = Command(
    "images",
    "List images.",
    "[OPTIONS] [REPOSITORY[:TAG]]",
    [
        Opt("--all,-a", FLAG, "show all images (there are no hidden intermediate images)"),
        Opt("--quiet,-q", FLAG, "only show image IDs"),
        Opt("--digests", FLAG, "show digests"),
        Opt("--no-trunc", FLAG, "do not truncate IDs"),
        Opt(
            "--format",
            VALUE,
            "json, or a Go template like '{{.Repository}}:{{.Tag}} {{.ID}}'",
            metavar="FORMAT",
        ),
    ],
    description="""\
Fields for --format: Repository, Tag, ID, Digest, CreatedAt, CreatedSince, Size,
ReadOnly. Images of shared read-only stores (--storage-opt additionalimagestore)
are listed after your own, with an R/O column (ReadOnly true).""",
)


def open_store(ctx: Context, *, create: bool = False) -> Store:
    from rootless.store import Store

    return Store.open(ctx.root, create=create)


def created_epoch(created: str) -> float | None:
    if not created:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return None


def split_name(full: str) -> tuple[str, str]:
    """docker.io/library/busybox:latest -> ("busybox", "latest")."""
    from rootless.image.reference import Reference

    ref = Reference.parse(full)
    return ref.familiar_name(), (ref.tag if ref.tag and not ref.digest else "<none>")


def _rows(image: ImageRecord, no_trunc: bool) -> list[dict[str, object]]:
    from rootless.cli.output import ago, human_size

    when = created_epoch(image.created)
    image_id = image.id if no_trunc else image.short_id
    base: dict[str, object] = {
        "ID": image_id,
        "CreatedAt": image.created,
        "CreatedSince": ago(when) if when is not None else "N/A",
        "Size": human_size(image.size),
        "VirtualSize": human_size(image.size),
        "ReadOnly": image.read_only,
    }
    digests = {split_name(d)[0]: d.split("@", 1)[1] for d in image.repo_digests}
    names = [split_name(n) for n in image.names] or [("<none>", "<none>")]
    rows = []
    for repo, tag in names:
        digest = digests.get(repo, "")
        rows.append(base | {"Repository": repo, "Tag": tag, "Digest": digest or "<none>"})
    return rows


def _matches(row: dict[str, object], filt: str | None) -> bool:
    if not filt:
        return True
    repo, _, tag = filt.partition(":")
    return row["Repository"] == repo and (not tag or row["Tag"] == tag)


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) > 1:
        raise UsageError('"rootless images" accepts at most 1 argument')
    from rootless.cli.output import emit

    store = open_store(ctx)
    no_trunc = bool(parsed.get("no_trunc"))
    filt = parsed.args[0] if parsed.args else None
    by_store: dict[str, list[ImageRecord]] = {}  # the own store first, then the shared ones
    for img in store.images():
        by_store.setdefault(img.store_root, []).append(img)
    rows = [
        r
        for images in by_store.values()
        for img in reversed(images)  # newest first within each store
        for r in _rows(img, no_trunc)
        if _matches(r, filt)
    ]
    if parsed.get("quiet"):
        seen: list[object] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        rows = [{"ID": i} for i in seen]
    headers = [("REPOSITORY", "Repository"), ("TAG", "Tag")]
    if parsed.get("digests"):
        headers.append(("DIGEST", "Digest"))
    headers += [("IMAGE ID", "ID"), ("CREATED", "CreatedSince"), ("SIZE", "Size")]
    if not parsed.get("format") and any(r.get("ReadOnly") for r in rows):
        headers.append(("R/O", "R/O"))
        rows = [r | {"R/O": "true" if r.get("ReadOnly") else "false"} for r in rows]
    emit(rows, parsed.get("format"), headers, quiet_field="ID", quiet=bool(parsed.get("quiet")))  # type: ignore[arg-type]
    return 0
