"""Docker-style output: aligned tables, `--format json`, Go-template `--format`,
and human sizes and times ("3 minutes ago", "12.3MB")."""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: object = None) -> None:
    """Print rows under headers, columns separated by at least three spaces (like docker)."""
    stream = out or sys.stdout
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    stream.write("\n".join(lines) + "\n")  # type: ignore[union-attr]


def emit(items: Sequence[Mapping[str, object]], fmt: str | None, headers: Sequence[tuple[str, str]],
         quiet_field: str | None = None, quiet: bool = False) -> None:
    """Render a list of records: quiet ids, json, a template per record, or a table.

    `headers` maps column titles to record keys, e.g. [("IMAGE ID", "ID")].
    A template starting with "table " prints a header line, as docker does.
    """
    if quiet and quiet_field:
        for item in items:
            sys.stdout.write(f"{item[quiet_field]}\n")
        return
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(list(items), indent=2) + "\n")
        return
    if fmt:
        from rootless.cli.template import render

        if fmt.startswith("table "):
            body = fmt[len("table "):]
            rows = [render(body, item).split("\t") for item in items]
            titles = [_title(part) for part in body.split("\t")]
            table(titles, rows)
            return
        for item in items:
            sys.stdout.write(render(fmt, item) + "\n")
        return
    table([h for h, _ in headers], [[str(item.get(k, "")) for _, k in headers] for item in items])


def _title(part: str) -> str:
    import re

    m = re.search(r"\{\{\s*\.(\w+)", part)
    if not m:
        return part.strip().upper()
    name = m.group(1)
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", " ", name).upper()


def human_size(n: float) -> str:
    """Docker's decimal units: 5.6MB, 1.23GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)}{unit}"
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}TB"


def human_duration(seconds: float) -> str:
    """Docker's HumanDuration: "Less than a second", "3 minutes", "2 hours", "5 days"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(timestamp: float, now: float | None = None) -> str:
    return human_duration((now or time.time()) - timestamp) + " ago"
