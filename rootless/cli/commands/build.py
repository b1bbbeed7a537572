"""`rootless build`: build an image from a Dockerfile."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, LIST, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "build",
    "Build an image from a Dockerfile.",
    "[OPTIONS] CONTEXT",
    [
        Opt("--tag,-t", LIST, "name and optionally a tag (NAME[:TAG]); repeatable", metavar="NAME"),
        Opt("--file,-f", VALUE, "the Dockerfile (default CONTEXT/Dockerfile)", metavar="FILE"),
        Opt("--build-arg", LIST, "set a build-time variable", metavar="KEY=VALUE"),
        Opt("--target", VALUE, "build up to this stage", metavar="STAGE"),
        Opt("--no-cache", FLAG, "do not use the build cache"),
        Opt("--pull", FLAG, "always pull the base images"),
        Opt("--network", VALUE, "network for RUN instructions", default="host", choices=("host", "none")),
        Opt("--platform", VALUE, "platform of the base images (os/arch[/variant])", metavar="PLATFORM"),
        Opt("--label", LIST, "set a label on the image", metavar="KEY=VALUE"),
        Opt("--quiet,-q", FLAG, "print only the image ID"),
    ],
    description="""\
RUN steps run in containers of this runtime, with the host network by default.
Without subordinate ids, RUN runs with root emulation (chown, setuid and device
mknod succeed as no-ops; apt's sandbox user is turned off); ownership from
COPY --chown is kept in the layer. Every step is cached: an unchanged rebuild
reuses all steps. See docs/build.md.""",
    examples="  rootless build -t myapp:1 .\n  rootless build --build-arg VERSION=2 --target test -f ci.Dockerfile .\n",
    stop_at_positional=False,
)


def _pairs(items: list[str], what: str, from_env: bool) -> dict[str, str]:
    import os

    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        if not eq:
            if not from_env:
                raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def main(ctx: Context, p: Parsed) -> int:
    from rootless.build.builder import BuildOptions, build
    from rootless.store import normalize_name

    if len(p.args) != 1:
        raise UsageError("\"rootless build\" requires exactly 1 argument (the context directory)\n"
                         "See 'rootless build --help'.")
    tags = [str(t) for t in p.get("tag") or []]  # type: ignore[attr-defined]
    for tag in tags:
        normalize_name(tag)  # a bad name fails before the build
    opts = BuildOptions(
        context=p.args[0],
        dockerfile=str(p.get("file")) if p.get("file") else None,
        tags=tags,
        build_args=_pairs([str(x) for x in p.get("build_arg") or []], "build arg", True),  # type: ignore[attr-defined]
        target=str(p.get("target")) if p.get("target") else None,
        no_cache=bool(p.get("no_cache")),
        pull=bool(p.get("pull")),
        network=str(p.get("network") or "host"),
        platform=str(p.get("platform")) if p.get("platform") else None,
        labels=_pairs([str(x) for x in p.get("label") or []], "label", False),  # type: ignore[attr-defined]
        quiet=bool(p.get("quiet")),
        root=ctx.root,
        runroot=ctx.runroot,
    )
    image_id = build(opts, sys.stdout)
    if opts.quiet:
        sys.stdout.write(image_id + "\n")
    else:
        sys.stdout.write(f"Successfully built {image_id.split(':', 1)[-1][:12]}\n")
        for tag in tags:
            sys.stdout.write(f"Successfully tagged {_familiar(tag)}\n")
    return 0


def _familiar(tag: str) -> str:
    from rootless.image.reference import Reference

    return Reference.parse(tag).familiar()
