"""Run work in a forked child inside the container's user namespace.

Why: for a user with subordinate ids, the upper dir and the layers hold files
owned by those ids (e.g. a 0700 directory of container uid 1000); only a process
in a user namespace with the same id map can read them, and only there do
`stat()` results show the container's ids. For a user without subordinate ids,
the single mapping (container 0 = the user) lets the child read what the
container made unreadable.

How (see csrc/rl_userns.h): the CLI is single-threaded, so Python's own
`os.fork()` is safe; the child calls `rl_ns_unshare` (or `rl_ns_join` for a
running container), the parent writes the maps with `idmap.apply`, and the child
then runs plain Python and leaves with `os._exit()`. Errors come back over a pipe
as one JSON line and are raised in the parent as `RootlessError`s. Host root needs
no namespace for reading; it still forks so that producers and consumers of a
stream run side by side.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterable

from rootless.errors import RootlessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.runtime.idmap import IdMapping


def caller_mapping(for_mount: bool = False) -> IdMapping | None:
    """The mapping containers of this user get; None for host root (no namespace
    needed), unless a mount namespace is wanted (then root maps 1:1)."""
    if os.getuid() == 0 and not for_mount:
        return None
    from rootless.runtime import idmap

    return idmap.plan()


class NsChild:
    """A forked child doing work; `wait()` raises what it reported."""

    def __init__(self, pid: int, err_fd: int) -> None:
        self.pid = pid
        self.err_fd = err_fd

    def wait(self) -> None:
        with os.fdopen(self.err_fd, "rb") as f:
            report = f.read()
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if report:
            try:
                obj = json.loads(report)
            except ValueError:
                obj = {"error": report.decode("utf-8", "replace").strip()}
            raise RootlessError(str(obj.get("error")), hint=obj.get("hint") or None)
        if code != 0:
            raise RootlessError(f"the helper process failed (exit status {code})")

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.wait()
        except RootlessError:
            pass


def _child_setup(mapping: IdMapping | None, mount: bool, join_pid: int | None) -> None:
    from rootless.native import lib, new_error, raise_native_error

    err = new_error()
    if join_pid is not None:
        rc = lib.rl_ns_join(join_pid, lib.RL_NS_USER, err)
    else:
        which = (lib.RL_NS_USER if mapping is not None else 0) | (lib.RL_NS_MOUNT if mount else 0)
        rc = lib.rl_ns_unshare(which, err)
    if rc < 0:
        raise_native_error(err)


def _report(fd: int, exc: BaseException) -> None:
    if isinstance(exc, RootlessError):
        obj = {"error": exc.message, "hint": exc.hint}
    elif isinstance(exc, OSError):
        what = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        obj = {"error": f"{what}{exc.strerror or exc}"}
    else:
        obj = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(fd, json.dumps(obj).encode())
    except OSError:
        pass


def _run_child(work: Callable[[], None], fds: tuple[int, int, int], mapping: IdMapping | None,
               mount: bool, join_pid: int | None) -> None:
    ready_w, go_r, err_w = fds
    code = 1
    try:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _child_setup(mapping, mount, join_pid)
        os.write(ready_w, b"R")
        os.close(ready_w)
        if os.read(go_r, 1) != b"G":
            os._exit(1)
        work()
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        _report(err_w, exc)
    os._exit(code)


def spawn(work: Callable[[], None], *, mapping: IdMapping | None, mount: bool = False,
          join_pid: int | None = None, close_in_parent: Iterable[int] = ()) -> NsChild:
    """Fork; the child enters the namespace(s) and runs `work()`. The parent closes
    `close_in_parent` (the child's ends of the caller's pipes) once it forked."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        for fd in (ready_r, go_w, err_r):
            os.close(fd)
        _run_child(work, (ready_w, go_r, err_w), mapping, mount, join_pid)
    for fd in (ready_w, go_r, err_w, *close_in_parent):
        os.close(fd)
    child = NsChild(pid, err_r)
    try:
        ready = os.read(ready_r, 1)
        os.close(ready_r)
        if ready != b"R":
            child.wait()
            raise RootlessError("the helper process died before it was ready")
        if mapping is not None and join_pid is None:
            from rootless.runtime import idmap

            idmap.apply(mapping, pid)
        os.write(go_w, b"G")
    except BaseException:
        os.close(go_w)
        child.kill()
        raise
    os.close(go_w)
    return child


def collect(work: Callable[[], bytes], *, mapping: IdMapping | None, mount: bool = False,
            join_pid: int | None = None) -> bytes:
    """Run `work()` in a namespace child and return the bytes it produced."""
    r, w = os.pipe2(os.O_CLOEXEC)

    def produce() -> None:
        os.close(r)
        data = memoryview(work())
        while data:
            data = data[os.write(w, data) :]
        os.close(w)

    child = spawn(produce, mapping=mapping, mount=mount, join_pid=join_pid, close_in_parent=[w])
    chunks = []
    try:
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    child.wait()
    return b"".join(chunks)
