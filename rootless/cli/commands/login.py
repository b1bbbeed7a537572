"""`rootless login` and `rootless logout`: registry credentials (auth.json, 0600)."""

from __future__ import annotations

import sys

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "login",
    "Log in to a registry.",
    "[OPTIONS] REGISTRY",
    [
        Opt("--username,-u", VALUE, "user name", metavar="USER"),
        Opt("--password,-p", VALUE, "password (prefer --password-stdin)", metavar="PASSWORD"),
        Opt("--password-stdin", FLAG, "read the password from stdin"),
        Opt("--tls-verify", FLAG, "verify the registry's TLS certificate", default="unset"),
    ],
    description="""\
The credentials are checked against the registry, then stored in
$REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, else
~/.config/containers/auth.json (mode 0600).""",
)


def registry_host(text: str) -> str:
    """`https://registry.example:5000/v2/` -> `registry.example:5000`; docker.io aliases."""
    host = text
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    if not host:
        raise UsageError(f"invalid registry {text!r}")
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


def _read_password(parsed: Parsed, username: str) -> str:
    if parsed.get("password_stdin"):
        if parsed.get("password"):
            raise UsageError("--password and --password-stdin are mutually exclusive")
        return sys.stdin.read().rstrip("\r\n")
    password = parsed.get("password")
    if password:
        return str(password)
    if not sys.stdin.isatty():
        raise UsageError("no password given: use --password-stdin or -p")
    import getpass

    return getpass.getpass("Password: ")


def _read_username(parsed: Parsed) -> str:
    username = parsed.get("username")
    if username:
        return str(username)
    if parsed.get("password_stdin") or not sys.stdin.isatty():
        raise UsageError("no user name given: use -u USER")
    sys.stderr.write("Username: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip()


def main(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.args) != 1:
        raise UsageError('"rootless login" requires exactly 1 argument (the registry)')
    from rootless.cli.commands.pull import tls_option
    from rootless.image.auth import Credentials, store_login
    from rootless.image.registry import RegistryClient

    registry = registry_host(parsed.args[0])
    username = _read_username(parsed)
    password = _read_password(parsed, username)
    if not username or not password:
        raise UsageError("user name and password must not be empty")
    server = "registry-1.docker.io" if registry == "docker.io" else registry
    creds = Credentials(username=username, password=password)
    with RegistryClient(
        server, credentials=creds, tls_verify=tls_option(parsed.get("tls_verify"))
    ) as client:
        client.check_login()
    store_login(registry, username, password)
    sys.stdout.write("Login Succeeded!\n")
    return 0
