"""`rootless logout`: forget the credentials stored for a registry."""

from __future__ import annotations

import sys

from rootless.cli.args import Command, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command("logout", "Log out from a registry.", "REGISTRY", [])


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 1:
        raise UsageError('"rootless logout" requires exactly 1 argument (the registry)')
    from rootless.cli.commands.login import registry_host
    from rootless.image.auth import auth_file_path, remove_login

    registry = registry_host(parsed.args[0])
    if not remove_login(registry):
        raise UsageError(f"not logged in to {registry} (no credentials in {auth_file_path()})")
    sys.stdout.write(f"Removed login credentials for {registry}\n")
    return 0
