"""The host processes that belong to a running container (for top and stats).

Without a delegated cgroup, a container's processes are those in its pid
namespace: the same /proc/<pid>/ns/pid as its PID 1.
"""

from __future__ import annotations

import os


def _ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def container_pids(init_pid: int) -> list[int]:
    want = _ns(init_pid)
    pids = []
    if want is None and os.path.exists(f"/proc/{init_pid}"):
        # --init's PID 1 is not dumpable (its ns links are closed to us): take its
        # pid namespace from a child
        from rootless.runtime.execute import joinable_pid

        try:
            child = joinable_pid(init_pid)
        except Exception:  # noqa: BLE001 - no child left: PID 1 alone
            return [init_pid]
        want = _ns(child)
        pids.append(init_pid)
    if want is None:
        return []
    for name in os.listdir("/proc"):
        if name.isdigit() and _ns(int(name)) == want:
            pids.append(int(name))
    return sorted(pids)


def cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2:].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def io_bytes(pid: int) -> tuple[int, int]:
    read = write = 0
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "read_bytes":
                    read = int(value)
                elif key == "write_bytes":
                    write = int(value)
    except (OSError, ValueError):
        pass
    return read, write


def mem_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0
