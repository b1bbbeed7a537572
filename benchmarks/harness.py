"""The measuring and reporting half of benchmarks/compare.py (no workload code here).

  Trial        one contender of a workload: a callable that runs it once and returns its
               wall time in seconds (or a dict case -> value when one run yields several
               numbers, e.g. a build and its cached rebuild)
  interleave   runs every trial once per round, in a new random order each round
               (A B A B, shuffled), after warm-up rounds that are not kept
  Case         one table: the rows (one per tool) measured on the same thing
  Workload     a workload's cases, how it was run, and notes
  render_*     the text table, the markdown section, the PNG plots
  update_doc   rewrites the generated part of docs/benchmarks.md (between markers),
               keeping every hand-written section and the workloads not measured now

Standard library only; matplotlib is optional (plots).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

TrialFn = Callable[[], "float | Mapping[str, float]"]


class BenchError(RuntimeError):
    """A contender failed or cannot run here; the message is one line for the table."""


def one_line(text: str, limit: int = 240) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else ""
    return msg[:limit]


def run_checked(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run with output captured; a non-zero exit raises BenchError(last line)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.run(list(argv), check=False, **kw)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace") if isinstance(proc.stderr, bytes) else ""
        raise BenchError(f"{os.path.basename(argv[0])}: exit {proc.returncode}: {one_line(err)}")
    return proc


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- measuring


@dataclass
class Trial:
    name: str
    fn: TrialFn | None
    cases: tuple[str, ...]
    max_rounds: int = 0  # 0: every round
    note: str = ""
    error: str = ""  # set before measuring: the tool cannot run here


Samples = dict[str, dict[str, list[float]]]  # case -> tool -> values


def interleave(trials: Sequence[Trial], rounds: int, warmup: int,
               log: Callable[[str], None] | None = None) -> Samples:
    """Run each live trial once per round in shuffled order; a trial that raises is
    dropped with its error (first failure wins) and keeps what it measured so far."""
    samples: Samples = {}
    for t in trials:
        for case in t.cases:
            samples.setdefault(case, {}).setdefault(t.name, [])
    live = [t for t in trials if not t.error and t.fn is not None]
    for r in range(warmup + rounds):
        order = [t for t in live if not t.max_rounds or r < warmup + t.max_rounds]
        random.shuffle(order)
        if log:
            label = f"warm-up {r + 1}/{warmup}" if r < warmup else f"round {r - warmup + 1}/{rounds}"
            log(f"{label}: {', '.join(t.name for t in order)}")
        for t in order:
            assert t.fn is not None
            try:
                value = t.fn()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - recorded as the tool's error
                t.error = describe_error(exc)
                live.remove(t)
                if log:
                    log(f"  {t.name} failed: {t.error}")
                continue
            if r < warmup:
                continue
            values = value if isinstance(value, Mapping) else {t.cases[0]: value}
            for case, v in values.items():
                samples.setdefault(case, {}).setdefault(t.name, []).append(float(v))
    return samples


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, subprocess.CalledProcessError):
        err = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        return f"{os.path.basename(str(exc.cmd[0]))}: exit {exc.returncode}: {one_line(err)}"
    if isinstance(exc, SystemExit):
        return one_line(str(exc.code))
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return one_line(f"{type(exc).__name__}: {exc}{where}")


# ---------------------------------------------------------------- results


@dataclass
class Row:
    tool: str
    samples: list[float] = field(default_factory=list)
    error: str = ""
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass
class Case:
    key: str
    title: str
    unit: str = "s"  # "s" (stored in seconds) or another unit such as "MiB"
    rows: list[Row] = field(default_factory=list)
    baseline: str = "rootless"

    def row(self, tool: str) -> Row | None:
        return next((r for r in self.rows if r.tool == tool), None)

    def ratio(self, row: Row) -> float | None:
        base = self.row(self.baseline)
        if base is None or base.median is None or row.median is None or base.median == 0:
            return None
        return row.median / base.median


@dataclass
class Workload:
    name: str
    title: str
    description: str = ""
    identity: str = ""
    rounds: int = 0
    warmup: int = 0
    cases: list[Case] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""  # the workload as a whole could not run
    date: str = ""
    command: str = ""
    commit: str = ""
    load: str = ""  # load average before -> after


def make_cases(specs: Sequence[tuple[str, str, str]], trials: Sequence[Trial],
               samples: Samples, baseline: str = "rootless") -> list[Case]:
    """One Case per (key, title, unit) spec with a row per trial that belongs to it."""
    cases = []
    for key, title, unit in specs:
        case = Case(key, title, unit, baseline=baseline)
        for t in trials:
            if key not in t.cases:
                continue
            values = samples.get(key, {}).get(t.name, [])
            case.rows.append(Row(t.name, values, "" if values else (t.error or "no sample"), t.note))
        cases.append(case)
    return cases


def workload_to_json(w: Workload) -> dict[str, Any]:
    return asdict(w)


def workload_from_json(d: Mapping[str, Any]) -> Workload:
    cases = [Case(**{**c, "rows": [Row(**r) for r in c["rows"]]}) for c in d.get("cases", [])]
    return Workload(**{**d, "cases": cases})


# ---------------------------------------------------------------- the machine


def _first_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False,
                           env=dict(env) if env is not None else None)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (p.stdout or p.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def tool_versions(tools: Mapping[str, Sequence[str]]) -> dict[str, str]:
    env = dict(os.environ, USER=os.environ.get("USER", "root"))
    out = {}
    for name, argv in tools.items():
        if not shutil.which(argv[0]):
            out[name] = "not installed"
            continue
        out[name] = _first_line(argv, env) or "?"
    return out


def _meminfo_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def filesystem(path: str) -> str:
    """'ext4 (rw,relatime,...)' for the mount holding `path`."""
    best, desc = "", "?"
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, desc = mnt, f"{parts[2]} ({parts[3]})"
    except OSError:
        pass
    return desc


def _cgroups() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)"
    return "v1"


def load_average() -> str:
    """The 1-minute load average."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def machine_info(paths: Mapping[str, str]) -> dict[str, str]:
    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _meminfo_gib(),
        "kernel": platform.release(),
        "os": _os_name(),
        "cgroups": _cgroups(),
    }
    for label, path in paths.items():
        info[f"filesystem {label}"] = f"{path}: {filesystem(path)}"
    return info


def git_commit(repo: str) -> str:
    rev = _first_line(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    if not rev:
        return "?"
    try:
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    return rev + (" (with uncommitted changes)" if dirty else "")


# ---------------------------------------------------------------- formatting


def _scale(case: Case) -> tuple[float, str, str]:
    """(factor, unit label, format) for the case's values."""
    if case.unit != "s":
        return 1.0, case.unit, "{:.1f}"
    meds = [r.median for r in case.rows if r.median is not None]
    if meds and max(meds) < 1.0:
        return 1000.0, "ms", "{:.1f}"
    return 1.0, "s", "{:.3f}" if (meds and max(meds) < 10) else "{:.2f}"


def fmt_value(case: Case, value: float | None, with_unit: bool = True) -> str:
    if value is None:
        return "–"
    factor, label, fmt = _scale(case)
    text = fmt.format(value * factor)
    return f"{text} {label}" if with_unit else text


def fmt_range(case: Case, row: Row) -> str:
    if not row.samples:
        return "–"
    factor, label, fmt = _scale(case)
    return f"{fmt.format(min(row.samples) * factor)}–{fmt.format(max(row.samples) * factor)} {label}"


def fmt_ratio(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def _row_cells(case: Case, row: Row) -> list[str]:
    if not row.samples:
        return [row.tool, "0", "–", "–", "–", f"cannot run here: {row.error}" if row.error else ""]
    return [row.tool, str(len(row.samples)), fmt_value(case, row.median), fmt_range(case, row),
            fmt_ratio(case.ratio(row)), row.note]


HEADER = ["tool", "n", "median", "min–max", "x rootless", "note"]


def render_text(workloads: Iterable[Workload]) -> str:
    out: list[str] = []
    for w in workloads:
        out.append(f"== {w.name}: {w.title}  [{w.identity}; {w.rounds} rounds, {w.warmup} warm-up]")
        if w.error:
            out.append(f"   not measured: {w.error}")
        for case in w.cases:
            out.append(f"-- {case.title}")
            rows = [HEADER] + [_row_cells(case, r) for r in case.rows]
            widths = [max(len(r[i]) for r in rows) for i in range(5)]
            for r in rows:
                cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)]
                out.append("   " + "  ".join(cells) + ("  " + r[5] if r[5] else ""))
        for note in w.notes:
            out.append(f"   * {note}")
        out.append("")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_case_md(case: Case) -> list[str]:
    lines = [f"**{case.title}**", "", "| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|---:|---|"]
    for row in case.rows:
        cells = _row_cells(case, row)
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    lines.append("")
    return lines


def render_workload_md(w: Workload, plot: str | None = None) -> str:
    lines = [f"### {w.title}", ""]
    if w.description:
        lines += [w.description, ""]
    lines += [(f"Measured {w.date} as {w.identity}: {w.rounds} interleaved rounds after {w.warmup} "
               f"warm-up, at commit {w.commit}, 1-minute load {w.load}; `{w.command}`."), ""]
    if w.error:
        lines += [f"Not measured: {w.error}", ""]
    for case in w.cases:
        lines += render_case_md(case)
    lines += [f"- {n}" for n in w.notes]
    if w.notes:
        lines.append("")
    if plot:
        lines += [f"![{w.name}]({plot})", ""]
    return "\n".join(lines)


def render_summary_md(workloads: Iterable[Workload]) -> str:
    """One line per case: rootless's median and every peer's, with the ratio."""
    lines = ["| workload | rootless | peers (median, x rootless) |", "|---|---:|---|"]
    for w in workloads:
        for case in w.cases:
            base = case.row(case.baseline)
            peers = [f"{r.tool} {fmt_value(case, r.median)} ({fmt_ratio(case.ratio(r))})"
                     for r in case.rows if r is not base and r.samples]
            peers += [f"{r.tool}: cannot run" for r in case.rows if r is not base and not r.samples]
            lines.append(f"| {_md_escape(case.title)} | {fmt_value(case, base.median if base else None)} "
                         f"| {_md_escape('; '.join(peers))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the document

BEGIN = "<!-- compare.py: generated part begins; edits here are overwritten -->"
END = "<!-- compare.py: generated part ends -->"
_W_BEGIN = "<!-- compare.py workload {name} -->"
_W_END = "<!-- compare.py workload {name} end -->"


def generated_sections(text: str) -> dict[str, str]:
    """The workload sections of an existing generated part, by name."""
    out = {}
    for m in re.finditer(r"<!-- compare\.py workload (\S+) -->\n(.*?)<!-- compare\.py workload \1 end -->",
                         text, re.DOTALL):
        out[m.group(1)] = m.group(2)
    return out


def render_generated(header: str, sections: Mapping[str, str], order: Sequence[str],
                     summary: str) -> str:
    parts = [BEGIN, "", header.rstrip(), ""]
    if summary:
        parts += ["#### Summary", "", summary, ""]
    for name in [*order, *sorted(set(sections) - set(order))]:
        if name in sections:
            parts += [_W_BEGIN.format(name=name), sections[name].rstrip() + "\n", _W_END.format(name=name), ""]
    parts.append(END)
    return "\n".join(parts)


def update_doc(text: str, header: str, new_sections: Mapping[str, str], order: Sequence[str],
               summary_for: Callable[[Mapping[str, str]], str]) -> str:
    """`text` with its generated part rebuilt: workloads in `new_sections` replaced,
    the others kept; everything outside the markers kept as it is. Without markers
    the generated part goes before the first `## ` heading."""
    start, end = text.find(BEGIN), text.find(END)
    if start != -1 and end != -1:
        old = generated_sections(text[start:end])
        before, after = text[:start], text[end + len(END):]
    else:
        old = {}
        m = re.search(r"^## ", text, re.MULTILINE)
        cut = m.start() if m else len(text)
        before, after = text[:cut], "\n" + text[cut:]
    sections = {**old, **new_sections}
    return before + render_generated(header, sections, order, summary_for(sections)) + after


# ---------------------------------------------------------------- plots


def plot_workload(w: Workload, path: str) -> bool:
    """A PNG of `w`: one panel per case, a bar per tool at its median with min–max
    error bars; tools that could not run are left out. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = [c for c in w.cases if any(r.samples for r in c.rows)]
    if not cases:
        return True
    cols = min(len(cases), 2)
    nrows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        rows = [r for r in case.rows if r.samples]
        factor, label, _ = _scale(case)
        meds = [r.median * factor for r in rows]  # type: ignore[operator]
        lo = [m - min(r.samples) * factor for m, r in zip(meds, rows)]
        hi = [max(r.samples) * factor - m for m, r in zip(meds, rows)]
        colors = ["#c0392b" if r.tool == case.baseline else "#7f8c8d" for r in rows]
        ax.barh(range(len(rows)), meds, xerr=[lo, hi], color=colors, capsize=3)
        ax.set_yticks(range(len(rows)), [r.tool for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel(f"median, {label} (bars: min–max)")
        ax.set_title(case.title, fontsize=10)
        for i, (m, r) in enumerate(zip(meds, rows)):
            ax.annotate(f" {m:.3g}", (max(r.samples) * factor, i), va="center", fontsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.suptitle(w.title, fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def dump_json(workloads: Iterable[Workload], meta: Mapping[str, Any]) -> str:
    return json.dumps({"meta": dict(meta), "workloads": [workload_to_json(w) for w in workloads]},
                      indent=1)


def log(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)
