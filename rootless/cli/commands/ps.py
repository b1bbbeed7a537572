"""`rootless ps`: list containers."""

from __future__ import annotations

import time

from rootless.cli.args import FLAG, LIST, VALUE, Command, Opt, Parsed
from rootless.cli.commands import _common
from rootless.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.runtime.containers import Container
    from rootless.runtime.state import Status

COMMAND = Command(
    "ps",
    "List containers (running ones; all with -a).",
    "[OPTIONS]",
    [
        Opt("--all,-a", FLAG, "show all containers, not just running ones"),
        Opt("--quiet,-q", FLAG, "only print container ids"),
        Opt("--no-trunc", FLAG, "do not truncate ids and commands"),
        Opt("--filter,-f", LIST, "filter: status=, name=, id=, ancestor=, exited=", metavar="KEY=VALUE"),
        Opt("--format", VALUE, "json, or a Go template such as '{{.Names}} {{.Status}}'", metavar="FORMAT"),
        Opt("--latest,-l", FLAG, "only the most recently created container"),
    ],
)

HEADERS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("COMMAND", "Command"), ("CREATED", "CreatedAt"),
           ("STATUS", "Status"), ("PORTS", "Ports"), ("NAMES", "Names")]


def status_text(st: Status, now: float) -> str:
    """docker's STATUS column: "Up 3 minutes", "Exited (0) 11 seconds ago", "Created"."""
    from rootless.cli.output import human_duration

    if st.state == "running" and st.started_at:
        return "Up " + human_duration(now - st.started_at)
    if st.state == "exited":
        ago = human_duration(now - st.finished_at) + " ago" if st.finished_at else ""
        return f"Exited ({st.exit_code}) {ago}".rstrip()
    return "Created"


def record(c: Container, no_trunc: bool, now: float) -> dict[str, object]:
    from rootless.cli.output import ago

    st = c.status()
    argv = [str(a) for a in c.config["run"]["argv"]]  # type: ignore[index]
    command = " ".join(argv)
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return {
        "ID": c.id if no_trunc else c.id[:12],
        "Image": str(c.config.get("image", "")),
        "Command": f'"{command}"',
        "CreatedAt": ago(float(c.config["created"]), now),  # type: ignore[arg-type]
        "Status": status_text(st, now),
        "State": st.state,
        "ExitCode": st.exit_code,
        "Ports": "",
        "Names": c.name,
        "Pid": st.pid,
    }


def _matches(c: Container, rec: dict[str, object], filters: list[tuple[str, str]]) -> bool:
    for key, value in filters:
        if key == "status" and rec["State"] != value:
            return False
        if key == "name" and value not in c.name:
            return False
        if key == "id" and not c.id.startswith(value):
            return False
        if key == "ancestor" and value not in (c.config.get("image"), c.config.get("image_id")):
            return False
        if key == "exited" and str(rec["ExitCode"]) != value:
            return False
    return True


def _parse_filters(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in ("status", "name", "id", "ancestor", "exited"):
            raise UsageError(f"invalid filter {item!r}: use status=, name=, id=, ancestor= or exited=")
        out.append((key, value))
    return out


def main(ctx: Context, p: Parsed) -> int:
    from rootless.cli.output import emit

    filters = _parse_filters(list(p.filter))  # type: ignore[attr-defined]
    now = time.time()
    items = []
    containers = _common.store(ctx).all()
    if p.latest:  # type: ignore[attr-defined]
        containers = containers[:1]
    for c in containers:
        rec = record(c, bool(p.no_trunc), now)  # type: ignore[attr-defined]
        if not p.all and not p.latest and rec["State"] != "running" and not filters:  # type: ignore[attr-defined]
            continue
        if _matches(c, rec, filters):
            items.append(rec)
    fmt = p.get("format")
    emit(items, fmt if isinstance(fmt, str) else None, HEADERS, "ID", bool(p.quiet))  # type: ignore[attr-defined]
    return 0
