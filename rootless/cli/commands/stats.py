"""`rootless stats`: CPU, memory, block I/O and pids of running containers."""

from __future__ import annotations

import os
import sys
import time

from rootless.cli.args import FLAG, VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.runtime.containers import Container

COMMAND = Command(
    "stats",
    "Show CPU, memory, block I/O and pids of running containers (from /proc: no cgroup needed).",
    "[OPTIONS] [CONTAINER...]",
    [Opt("--no-stream", FLAG, "print one sample and exit"),
     Opt("--all,-a", FLAG, "include stopped containers"),
     Opt("--format", VALUE, "json or a Go template", metavar="FORMAT")],
)

HEADERS = [("CONTAINER ID", "ID"), ("NAME", "Name"), ("CPU %", "CPUPerc"), ("MEM USAGE / LIMIT", "MemUsage"),
           ("MEM %", "MemPerc"), ("NET I/O", "NetIO"), ("BLOCK I/O", "BlockIO"), ("PIDS", "PIDs")]


def _sample(containers: list[Container]) -> dict[str, tuple[int, list[int]]]:
    from rootless.runtime.procs import container_pids, cpu_ticks

    out = {}
    for c in containers:
        st = c.status()
        pids = container_pids(st.pid) if st.running else []
        out[c.id] = (sum(cpu_ticks(p) for p in pids), pids)
    return out


def _rows(containers: list[Container], interval: float) -> list[dict[str, object]]:
    from rootless.cli.output import human_size
    from rootless.runtime.procs import io_bytes, mem_total, rss_bytes

    first = _sample(containers)
    time.sleep(interval)
    second = _sample(containers)
    hz = os.sysconf("SC_CLK_TCK")
    total = mem_total()
    rows: list[dict[str, object]] = []
    for c in containers:
        ticks, pids = second[c.id]
        cpu = (ticks - first[c.id][0]) / hz / interval * 100 if pids else 0.0
        mem = sum(rss_bytes(p) for p in pids)
        io = [io_bytes(p) for p in pids]
        rows.append({
            "ID": c.id[:12], "Name": c.name, "CPUPerc": f"{cpu:.2f}%",
            "MemUsage": f"{human_size(mem)} / {human_size(total)}",
            "MemPerc": f"{(mem / total * 100 if total else 0):.2f}%",
            "NetIO": "host" if c.config["run"].get("network") == "host" else "0B / 0B",  # type: ignore[attr-defined]
            "BlockIO": f"{human_size(sum(r for r, _ in io))} / {human_size(sum(w for _, w in io))}",
            "PIDs": str(len(pids)),
        })
    return rows


def main(ctx: Context, p: Parsed) -> int:
    from rootless.cli.output import emit

    s = _common.store(ctx)
    containers = [s.get(r) for r in p.args] if p.args else [
        c for c in s.all() if p.all or c.status().running]  # type: ignore[attr-defined]
    fmt = p.get("format")
    while True:
        rows = _rows(containers, 0.5)
        if not p.no_stream and sys.stdout.isatty():  # type: ignore[attr-defined]
            sys.stdout.write("\x1b[2J\x1b[H")
        emit(rows, fmt if isinstance(fmt, str) else None, HEADERS)
        sys.stdout.flush()
        if p.no_stream or not sys.stdout.isatty():  # type: ignore[attr-defined]
            return 0
