"""`rootless image`: manage images (inspect, ls, rm, prune, history, tag, pull)."""

from __future__ import annotations

import json
import sys

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed, parse
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.store import ImageRecord

SUBCOMMANDS = {
    "inspect": ("rootless.cli.commands.image", "Display detailed information on images"),
    "ls": ("rootless.cli.commands.images", "List images"),
    "list": ("rootless.cli.commands.images", "List images"),
    "rm": ("rootless.cli.commands.rmi", "Remove images"),
    "prune": ("rootless.cli.commands.image", "Remove unused images"),
    "history": ("rootless.cli.commands.history", "Show the history of an image"),
    "tag": ("rootless.cli.commands.tag", "Give an image another name"),
    "pull": ("rootless.cli.commands.pull", "Download an image from a registry"),
}

COMMAND = Command(
    "image",
    "Manage images.",
    "COMMAND [ARGS...]",
    [],
    description="Commands:\n" + "\n".join(f"  {k:<8} {v[1]}" for k, v in SUBCOMMANDS.items()),
)

INSPECT = Command(
    "image inspect",
    "Display detailed information on one or more images.",
    "[OPTIONS] IMAGE [IMAGE...]",
    [Opt("--format,-f", VALUE, "a Go template, e.g. '{{.Id}}', or json", metavar="FORMAT")],
    stop_at_positional=False,
)

PRUNE = Command(
    "image prune",
    "Remove unused images.",
    "[OPTIONS]",
    [
        Opt("--all,-a", FLAG, "remove every image no container uses, not just dangling ones"),
        Opt("--force,-f", FLAG, "do not prompt for confirmation (rootless never prompts)"),
    ],
)


def inspect_json(image: ImageRecord) -> dict[str, object]:
    """docker image inspect's object for one image."""
    from rootless.image.reference import Reference

    raw = dict(image.config.raw)
    cfg = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    return {
        "Id": image.id,
        "Digest": image.manifest_digest,
        "RepoTags": [Reference.parse(n).familiar() for n in image.names],
        "RepoDigests": [Reference.parse(d).familiar() for d in image.repo_digests],
        "Parent": "",
        "Comment": str(raw.get("comment", "")),
        "Created": image.created,
        "Author": image.config.author,
        "Config": cfg,
        "Architecture": image.config.architecture,
        "Variant": image.config.variant or None,
        "Os": image.config.os,
        "Size": image.size,
        "VirtualSize": image.size,
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "History": raw.get("history", []),
        "ManifestMediaType": image.media_type,
    }


def _inspect(ctx: Context, parsed: Parsed) -> int:
    if not parsed.args:
        raise UsageError('"rootless image inspect" requires at least 1 argument')
    from rootless.store import Store

    store = Store.open(ctx.root, create=False)
    objs = [inspect_json(store.image(text)) for text in parsed.args]
    fmt = parsed.get("format")
    if fmt and fmt != "json":
        from rootless.cli.template import render

        for obj in objs:
            sys.stdout.write(render(str(fmt), obj) + "\n")
        return 0
    sys.stdout.write(json.dumps(objs, indent=4) + "\n")
    return 0


def _prune(ctx: Context, parsed: Parsed) -> int:
    if parsed.args:
        raise UsageError('"rootless image prune" accepts no arguments')
    from rootless.cli.output import human_size
    from rootless.store import Store
    from rootless.store.gc import prune_images

    store = Store.open(ctx.root, create=False)
    events, freed = prune_images(store, all_unused=bool(parsed.get("all")))
    if events:
        sys.stdout.write("Deleted Images:\n")
        for kind, value in events:
            sys.stdout.write(f"{kind}: {value}\n")
        sys.stdout.write("\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


def main(ctx: Context, parsed: Parsed) -> int:
    if not parsed.args:
        sys.stdout.write(COMMAND.help_text())
        return 0 if parsed.help else 125
    sub, rest = parsed.args[0], parsed.args[1:]
    if sub not in SUBCOMMANDS:
        raise UsageError(
            f"unknown command {sub!r} for rootless image\nRun 'rootless image --help'."
        )
    if sub in ("inspect", "prune"):
        cmd = INSPECT if sub == "inspect" else PRUNE
        sub_parsed = parse(cmd, rest)
        if sub_parsed.help:
            sys.stdout.write(cmd.help_text())
            return 0
        return (_inspect if sub == "inspect" else _prune)(ctx, sub_parsed)
    import importlib

    module = importlib.import_module(SUBCOMMANDS[sub][0])
    sub_parsed = parse(module.COMMAND, rest)
    if sub_parsed.help:
        sys.stdout.write(module.COMMAND.help_text())
        return 0
    return int(module.main(ctx, sub_parsed))
