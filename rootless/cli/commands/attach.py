"""`rootless attach`: connect this terminal to a running container."""

from __future__ import annotations

from rootless.cli.args import FLAG, Command, Opt, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context

COMMAND = Command(
    "attach",
    "Attach this terminal to a running container's input and output. Detach with ctrl-p ctrl-q.",
    "[OPTIONS] CONTAINER",
    [Opt("--no-stdin", FLAG, "do not attach stdin")],
)


def main(ctx: Context, p: Parsed) -> int:
    from rootless.errors import ContainerError
    from rootless.runtime import lifecycle
    from rootless.runtime.attach import Session, connect

    c = _common.one(ctx, p.args, "attach")
    if not c.status().running:
        raise ContainerError(f"cannot attach to a stopped container: {c.name}", hint="start it with `start -ai`")
    run = c.config["run"]
    try:
        sock = connect(lifecycle.socket_path(c))
    except OSError as exc:
        raise ContainerError(f"cannot reach the monitor of {c.name}: {exc.strerror}") from exc
    from rootless.runtime.runner import SignalForwarder

    forwarder = SignalForwarder()
    forwarder.pid = c.status().pid
    try:
        code = Session(sock, bool(run["tty"]), bool(run["interactive"]) and not p.no_stdin).run()  # type: ignore[index, attr-defined]
    finally:
        forwarder.restore()
        sock.close()
    if code is None:
        return 0
    return code
