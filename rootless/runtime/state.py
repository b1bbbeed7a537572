"""Container state that must never lie.

Volatile state lives in the runroot (`state.json`: pid, its start time, monitor
pid, start time); the monitor writes the exit status to an `exit` file in both
the runroot and the store when the container ends. "Running" means the pid
exists *and* its start time in /proc/<pid>/stat matches the recorded one, so a
recycled pid, a killed monitor or a reboot (runroot cleared) never shows "Up".
"""

from __future__ import annotations

import os


def atomic_write_json(path: str, obj: object, sync: bool = True) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        from rootless.runtime.jsonlite import dumps

        os.write(fd, dumps(obj).encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: str) -> dict[str, object] | None:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    try:
        if fields[0] == b"Z":  # a zombie has finished
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, start: int | None) -> bool:
    return pid > 0 and start is not None and pid_start_time(pid) == start


def read_exit(path: str) -> tuple[int, float] | None:
    """(status, finished_at) from an exit file written by rootless-monitor."""
    try:
        with open(path, encoding="ascii") as f:
            code, when = f.read().split()
        return int(code), float(when)
    except (OSError, ValueError):
        return None


class Status:
    """What `ps` shows: created, running, or exited (with code and times)."""

    __slots__ = ("state", "pid", "exit_code", "started_at", "finished_at", "monitor_pid")

    def __init__(self, state: str, pid: int = 0, exit_code: int | None = None,
                 started_at: float | None = None, finished_at: float | None = None,
                 monitor_pid: int = 0) -> None:
        self.state = state
        self.pid = pid
        self.exit_code = exit_code
        self.started_at = started_at
        self.finished_at = finished_at
        self.monitor_pid = monitor_pid

    @property
    def running(self) -> bool:
        return self.state == "running"


def compute(state_path: str, exit_paths: list[str]) -> Status:
    """The container's real status from its state file and exit files."""
    st = read_json(state_path) or {}
    pid = int(st.get("pid", 0) or 0)  # type: ignore[call-overload]
    start = st.get("pid_start")
    started_at = st.get("started_at")
    started = float(started_at) if isinstance(started_at, (int, float)) else None
    monitor_pid = int(st.get("monitor_pid", 0) or 0)  # type: ignore[call-overload]
    if pid and alive(pid, start if isinstance(start, int) else None):
        return Status("running", pid, None, started, None, monitor_pid)
    exits = [e for e in (read_exit(p) for p in exit_paths) if e is not None]
    if exits:
        code, finished = max(exits, key=lambda e: e[1])
        if started is None or finished >= started - 1:
            return Status("exited", 0, code, started, finished)
    mstart = st.get("monitor_start")
    if pid and monitor_pid and alive(monitor_pid, mstart if isinstance(mstart, int) else None):
        # The process has just ended and its monitor is still writing the exit status.
        return Status("running", pid, None, started, None, monitor_pid)
    if pid:
        # It was started, its process is gone, and no monitor recorded an exit:
        # the monitor was killed (the container died with it) or the host rebooted.
        return Status("exited", 0, 137, started, started)
    return Status("created")
