"""Helpers shared by the container commands."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, LIST, Opt

# Options several commands share, declared once.
CHANGE_OPT = Opt("--change,-c", LIST, "apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, "
                 "LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR", metavar="INSTRUCTION")
TLS_VERIFY_OPT = Opt("--tls-verify", FLAG, "verify the registry's TLS certificate (default: true, "
                     "except for loopback and insecure registries)", default="unset")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.runtime.containers import Container, ContainerStore


def store(ctx: Context) -> ContainerStore:
    from rootless.runtime.containers import ContainerStore

    return ContainerStore(ctx.root, ctx.runroot)


def each(ctx: Context, refs: list[str], action: object, what: str) -> int:
    """Run action(container) for every ref; print the ref on success like docker.
    Errors are reported one line each; the exit status is 125 if any failed."""
    from rootless.errors import RootlessError

    if not refs:
        from rootless.errors import UsageError

        raise UsageError(f"'rootless {what}' requires at least one container")
    s = store(ctx)
    failed = False
    for ref in refs:
        try:
            c = s.get(ref)
            action(c)  # type: ignore[operator]
            sys.stdout.write(ref + "\n")
        except RootlessError as exc:
            sys.stderr.write(f"rootless: {exc.message}\n")
            failed = True
    return 125 if failed else 0


def one(ctx: Context, refs: list[str], what: str) -> Container:
    from rootless.errors import UsageError

    if len(refs) != 1:
        raise UsageError(f"'rootless {what}' requires exactly one container")
    return store(ctx).get(refs[0])
