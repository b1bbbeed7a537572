"""`rootless rename`: give a container a new name."""

from __future__ import annotations

from rootless.cli.args import Command, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command("rename", "Rename a container.", "CONTAINER NEW_NAME", [])


def main(ctx: Context, p: Parsed) -> int:
    from rootless.errors import ContainerError, UsageError
    from rootless.runtime import names

    if len(p.args) != 2:
        raise UsageError("'rootless rename' requires exactly 2 arguments: CONTAINER NEW_NAME")
    s = _common.store(ctx)
    c = s.get(p.args[0])
    new = p.args[1]
    if not names.valid(new):
        raise UsageError(f"invalid container name {new!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    with c.lock():
        if new == c.name:
            return 0
        if any(o.name == new and o.id != c.id for o in s.all()) or not s.reserve_name(new, c.id):
            raise ContainerError(f'the container name "{new}" is already in use')
        old = c.name
        c.config["name"] = new
        c.save_config()
        s.release_name(old, c.id)
    return 0
