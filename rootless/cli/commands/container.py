"""`rootless container SUBCOMMAND`: the container commands under one name, plus prune."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, Command, Opt, Parsed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

SUBCOMMANDS = {
    "ls": "ps", "list": "ps", "ps": "ps", "create": "create", "start": "start", "stop": "stop",
    "restart": "restart", "kill": "kill", "rm": "rm", "remove": "rm", "wait": "wait", "logs": "logs",
    "attach": "attach", "inspect": "inspect", "rename": "rename", "run": "run", "exec": "exec",
    "diff": "diff", "commit": "commit", "cp": "cp", "export": "export", "top": "top", "stats": "stats",
}

COMMAND = Command(
    "container",
    "Manage containers: ls, create, start, stop, restart, kill, rm, wait, logs, attach, inspect, rename, prune, ...",
    "SUBCOMMAND [ARGS...]",
    [Opt("--force,-f", FLAG, "prune: do not ask (always implied: rootless never prompts)")],
    stop_at_positional=True,
)


def prune(ctx: Context) -> int:
    from rootless.cli.commands._common import store
    from rootless.runtime import lifecycle

    removed = 0
    for c in store(ctx).all():
        if c.status().running:
            continue
        lifecycle.remove(c)
        sys.stdout.write(c.id + "\n")
        removed += 1
    sys.stdout.write(f"Total removed containers: {removed}\n")
    return 0


def main(ctx: Context, p: Parsed) -> int:
    from rootless.cli.main import dispatch
    from rootless.errors import UsageError

    if not p.args:
        sys.stdout.write(COMMAND.help_text())
        return 0
    sub, rest = p.args[0], p.args[1:]
    if sub == "prune":
        return prune(ctx)
    if sub not in SUBCOMMANDS:
        raise UsageError(f"unknown container subcommand {sub!r}\nSee 'rootless container --help'.")
    return dispatch([SUBCOMMANDS[sub], *rest], ctx)
