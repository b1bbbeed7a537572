"""Entry point: global options, lazy command dispatch, and errors -> exit codes.

Exit codes follow docker: the container's own status, or 125 when rootless itself
failed, 126 when the command cannot be executed, 127 when it is not found.
"""

from __future__ import annotations

import os
import sys

from rootless.errors import RootlessError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.args import Parsed

# name -> (module, one-line summary). Modules are imported only when used.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("rootless.cli.commands.run", "Run a command in a new container"),
    "create": ("rootless.cli.commands.create", "Create a new container"),
    "start": ("rootless.cli.commands.start", "Start one or more stopped containers"),
    "ps": ("rootless.cli.commands.ps", "List containers"),
    "stop": ("rootless.cli.commands.stop", "Stop running containers"),
    "restart": ("rootless.cli.commands.restart", "Restart containers"),
    "kill": ("rootless.cli.commands.kill", "Send a signal to running containers"),
    "rm": ("rootless.cli.commands.rm", "Remove containers"),
    "wait": ("rootless.cli.commands.wait", "Wait for containers to stop and print their exit codes"),
    "logs": ("rootless.cli.commands.logs", "Print a container's output"),
    "attach": ("rootless.cli.commands.attach", "Attach to a running container"),
    "inspect": ("rootless.cli.commands.inspect", "Show low-level information as JSON"),
    "rename": ("rootless.cli.commands.rename", "Rename a container"),
    "diff": ("rootless.cli.commands.diff", "Inspect changes to files on a container's filesystem"),
    "commit": ("rootless.cli.commands.commit", "Create a new image from a container's changes"),
    "export": ("rootless.cli.commands.export", "Export a container's filesystem as a tar archive"),
    "cp": ("rootless.cli.commands.cp", "Copy files between a container and the host"),
    "container": ("rootless.cli.commands.container", "Manage containers"),
    "exec": ("rootless.cli.commands.exec", "Run a command in a running container"),
    "top": ("rootless.cli.commands.top", "Show the processes running in a container"),
    "stats": ("rootless.cli.commands.stats", "Show CPU, memory and I/O use of containers"),
    "info": ("rootless.cli.commands.info", "Show what this host allows rootless to do"),
    "version": ("rootless.cli.commands.version", "Show the rootless version"),
    "pull": ("rootless.cli.commands.pull", "Download an image from a registry"),
    "images": ("rootless.cli.commands.images", "List images"),
    "rmi": ("rootless.cli.commands.rmi", "Remove one or more images"),
    "tag": ("rootless.cli.commands.tag", "Give an image another name"),
    "image": ("rootless.cli.commands.image", "Manage images (inspect, ls, rm, prune, history, ...)"),
    "history": ("rootless.cli.commands.history", "Show the history of an image"),
    "login": ("rootless.cli.commands.login", "Log in to a registry"),
    "logout": ("rootless.cli.commands.logout", "Log out from a registry"),
    "load": ("rootless.cli.commands.load", "Load images from a tar archive"),
    "save": ("rootless.cli.commands.save", "Save images to a tar archive"),
    "import": ("rootless.cli.commands.import_", "Create an image from a rootfs tarball"),
    "push": ("rootless.cli.commands.push", "Upload an image to a registry"),
    "build": ("rootless.cli.commands.build", "Build an image from a Dockerfile"),
}

GLOBAL_HELP = """\
Usage:  rootless [GLOBAL OPTIONS] COMMAND [ARGS...]

A daemonless container runtime for unprivileged users.

Global options:
  --root DIR         persistent store (default $ROOTLESS_ROOT, else $XDG_DATA_HOME/rootless,
                     else ~/.local/share/rootless)
  --runroot DIR      volatile state (default $XDG_RUNTIME_DIR/rootless, else /tmp/rootless-UID)
  --storage-driver D overlay, fuse-overlayfs or vfs for new containers (default: probed;
                     also $ROOTLESS_STORAGE_DRIVER)
  --storage-opt additionalimagestore=DIR
                     a shared, read-only image store searched after yours (repeatable;
                     default $ROOTLESS_IMAGE_STORES, else storage.conf; see docs/storage.md)
  --log-level LEVEL  debug, info, warning (default) or error
  -v, --version      print the version and exit
  -h, --help         print this help

Commands:
{commands}

Run 'rootless COMMAND --help' for more information on a command.
"""


class Context:
    """What every command shares: store locations and logging."""

    def __init__(self, root: str | None, runroot: str | None, storage_driver: str | None = None,
                 image_stores: list[str] | None = None) -> None:
        self._root = root
        self._runroot = runroot
        self.storage_driver = storage_driver
        if image_stores is not None:  # --storage-opt: for every Store.open of this process
            from rootless.store import shared

            shared.set_cli_stores(image_stores)

    @property
    def image_stores(self) -> list[str]:
        """The shared read-only image stores under the user's own (rootless.store.shared)."""
        from rootless.store import shared

        return shared.image_stores()

    @property
    def root(self) -> str:
        if self._root is None:
            from rootless.paths import default_root

            self._root = default_root()
        return self._root

    @property
    def runroot(self) -> str:
        if self._runroot is None:
            from rootless.paths import default_runroot

            self._runroot = default_runroot()
        return self._runroot


def _take_value(argv: list[str], i: int, name: str) -> tuple[str, int]:
    arg = argv[i]
    if "=" in arg:
        return arg.split("=", 1)[1], i + 1
    if i + 1 >= len(argv):
        raise UsageError(f"flag needs an argument: {name}")
    return argv[i + 1], i + 2


def _global_help() -> str:
    width = max(len(n) for n in COMMANDS)
    cmds = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return GLOBAL_HELP.format(commands=cmds)


def _parse_globals(argv: list[str]) -> tuple[Context, list[str]]:
    root = runroot = driver = None
    storage_opts: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name == "--root":
            root, i = _take_value(argv, i, name)
            root = os.path.abspath(root)
        elif name == "--runroot":
            runroot, i = _take_value(argv, i, name)
            runroot = os.path.abspath(runroot)
        elif name == "--storage-driver":
            driver, i = _take_value(argv, i, name)
            # as $ROOTLESS_STORAGE_DRIVER: library code that picks a driver sees it too
            os.environ["ROOTLESS_STORAGE_DRIVER"] = driver
        elif name == "--storage-opt":
            opt, i = _take_value(argv, i, name)
            storage_opts.append(opt)
        elif name == "--log-level":
            level, i = _take_value(argv, i, name)
            from rootless import log

            if level not in log.LEVELS:
                raise UsageError(f"invalid log level {level!r}: choose debug, info, warning or error")
            log.set_level(level)
        elif arg in ("-v", "--version"):
            return Context(root, runroot, driver), ["version"]
        elif arg in ("-h", "--help"):
            return Context(root, runroot, driver), ["help"]
        else:
            raise UsageError(f"unknown flag: {arg}\nSee 'rootless --help'.")
    stores = None
    if storage_opts:
        from rootless.store.shared import parse_storage_opts

        stores = parse_storage_opts(storage_opts)
    return Context(root, runroot, driver, stores), argv[i:]


def dispatch(argv: list[str], ctx: Context | None = None) -> int:
    if ctx is None:
        ctx, rest = _parse_globals(argv)
    else:
        rest = argv
    if not rest or rest[0] == "help":
        if len(rest) > 1 and rest[1] in COMMANDS:
            rest = [rest[1], "--help"]
        else:
            sys.stdout.write(_global_help())
            return 0 if rest else 125
    name = rest[0]
    if name not in COMMANDS:
        raise UsageError(f"unknown command {name!r} for rootless\nRun 'rootless --help' for usage.")
    # __import__ and sys.modules, not importlib: importing importlib (and the warnings
    # module it pulls in) costs 0.5 ms of every command's start
    __import__(COMMANDS[name][0])
    module = sys.modules[COMMANDS[name][0]]
    from rootless.cli.args import parse

    parsed: Parsed = parse(module.COMMAND, rest[1:])
    if parsed.help:
        sys.stdout.write(module.COMMAND.help_text())
        return 0
    return int(module.main(ctx, parsed))


def _report(message: str) -> None:
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout must not hide the error
        pass
    # Always one line: a "See 'rootless X --help'." follow-up joins the message.
    message = " ".join(part.strip() for part in message.splitlines() if part.strip())
    sys.stderr.write(f"rootless: {message}\n")
    sys.stderr.flush()


def _output_errors(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Hostile names must print, not crash: a file name's undecodable bytes
    (surrogate escapes) go out as the raw bytes, like ls; other unencodable
    characters (a lone surrogate from an image's JSON) as \\uXXXX escapes."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in chunk):
        return bytes(ord(c) - 0xDC00 for c in chunk), exc.end
    return "".join(f"\\u{ord(c):04x}" for c in chunk), exc.end


def _tolerant_stdout() -> None:
    import codecs

    codecs.register_error("rootless-output", _output_errors)
    try:
        sys.stdout.reconfigure(errors="rootless-output")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass  # not a text stream (tests, embedding): leave it alone


def main(argv: list[str] | None = None) -> int:
    _tolerant_stdout()
    try:
        return dispatch(sys.argv[1:] if argv is None else argv)
    except RootlessError as exc:
        _report(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        _report(str(exc))
        return 125
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a traceback
        from rootless import log

        if log.enabled("debug"):
            import traceback

            traceback.print_exc()
        _report(f"internal error: {type(exc).__name__}: {exc} (rerun with --log-level debug)")
        return 125
