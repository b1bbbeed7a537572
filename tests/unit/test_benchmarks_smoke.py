"""benchmarks/compare.py cannot rot silently: its measuring loop, tables, JSON and
document update on fake data, and (as root, with rltest-sub) one quick real workload."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


H = _load("harness")
C = _load("compare")


def fake_workload(name: str = "run-rootfs", rootless: float = 0.014) -> object:
    case = H.Case("start", "run --rm … true", "s", [
        H.Row("rootless", [rootless, rootless + 0.002, rootless - 0.001]),
        H.Row("ch-run", [0.0024, 0.0025, 0.0023], note="peer"),
        H.Row("crun", [], error="cgroups in hybrid mode not supported | really"),
    ])  # fmt: skip
    mem = H.Case("peak", "peak RSS", "MiB", [H.Row("rootless", [98.0, 100.0]), H.Row("runc", [150.0])])
    return H.Workload(name, f"title of {name}", "what it measures", identity="rltest-sub", rounds=3,
                      warmup=1, cases=[case, mem], notes=["a note"], date="2026-01-01 00:00 UTC",
                      command="sudo python benchmarks/compare.py", commit="abc1234", load="0.1 -> 0.2")  # fmt: skip


META = {"date": "2026-01-01 00:00 UTC", "command": "sudo python benchmarks/compare.py", "commit": "abc1234",
        "machine": {"cpu": "fake", "cores": "2"}, "versions": {"rootless": "rootless 0.1", "crun": "not installed"}}  # fmt: skip


def test_interleave_records_samples_errors_and_round_limits() -> None:
    calls: list[str] = []

    def ok() -> float:
        calls.append("ok")
        return 0.5

    def two() -> dict[str, float]:
        calls.append("two")
        return {"a": 1.0, "b": 2.0}

    def boom() -> float:
        raise H.BenchError("no cgroups here")

    trials = [H.Trial("ok", ok, ("a",)), H.Trial("two", two, ("a", "b"), max_rounds=2),
              H.Trial("boom", boom, ("a",)), H.Trial("absent", None, ("b",), error="not installed")]  # fmt: skip
    samples = H.interleave(trials, rounds=4, warmup=1)
    assert samples["a"]["ok"] == [0.5] * 4 and calls.count("ok") == 5
    assert samples["a"]["two"] == [1.0, 1.0] and samples["b"]["two"] == [2.0, 2.0]
    assert samples["a"]["boom"] == [] and trials[2].error == "no cgroups here"
    cases = H.make_cases([("a", "case a", "s"), ("b", "case b", "s")], trials, samples, baseline="ok")
    assert [r.tool for r in cases[0].rows] == ["ok", "two", "boom"]
    assert cases[0].ratio(cases[0].row("two")) == pytest.approx(2.0)  # type: ignore[arg-type]
    assert cases[1].row("absent").error == "not installed"  # type: ignore[union-attr]


def test_text_markdown_and_json_round_trip() -> None:
    w = fake_workload()
    text = H.render_text([w])
    assert "rootless" in text and "14.0 ms" in text and "0.17x" in text
    assert "cannot run here: cgroups in hybrid mode" in text and "98.0–100.0 MiB" in text
    md = H.render_workload_md(w, "benchmarks/run-rootfs.png")
    assert "| ch-run | 3 | 2.4 ms | 2.3–2.5 ms | 0.17x | peer |" in md
    assert "hybrid mode not supported \\| really" in md  # a | in an error does not break the table
    assert "![run-rootfs](benchmarks/run-rootfs.png)" in md and "`sudo python benchmarks/compare.py`" in md
    back = H.workload_from_json(json.loads(H.dump_json([w], META))["workloads"][0])
    assert back == w


def test_doc_update_keeps_hand_written_sections_and_other_workloads(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nIntro.\n\n## Single-file images (squashfs)\n\nTheirs.\n")
    C.write_doc([fake_workload("run-rootfs"), fake_workload("pull", 0.8)], META, {}, str(doc))
    first = doc.read_text()
    assert first.index("Intro.") < first.index(H.BEGIN) < first.index(H.END) < first.index("Theirs.")
    assert "| run --rm … true | 14.0 ms |" in first and "| cpu | fake |" in first
    # A later run of one workload replaces it and keeps the other.
    C.write_doc([fake_workload("pull", 0.5)], META, {}, str(doc))
    second = doc.read_text()
    assert second.count(H.BEGIN) == 1 and "Theirs." in second and "Intro." in second
    assert "run --rm … true | 14.0 ms" in second and "| run --rm … true | 500.0 ms |" in second
    assert second.index("workload run-rootfs") < second.index("workload pull")


def test_plots_or_a_clear_skip(tmp_path: Path) -> None:
    out = tmp_path / "p" / "run-rootfs.png"
    drawn = H.plot_workload(fake_workload(), str(out))  # type: ignore[arg-type]
    if drawn:  # matplotlib is installed
        assert out.stat().st_size > 1000
    else:
        assert not out.exists()


def test_from_json_reports_without_measuring(tmp_path: Path) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(H.dump_json([fake_workload()], META))
    proc = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--from-json", str(saved), "--no-write"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "== run-rootfs" in proc.stdout and "cannot run here" in proc.stdout
    bad = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--only", "nope", "--no-write"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown workload 'nope'" in bad.stderr


def _can_run_quick() -> str:
    if os.geteuid() != 0:
        return "needs root (drops to rltest-sub)"
    try:
        pwd.getpwnam("rltest-sub")
    except KeyError:
        return "no rltest-sub user (scripts/setup-host.sh)"
    if not os.path.exists("/bin/busybox"):
        return "no busybox-static"
    return ""


@pytest.mark.skipif(bool(_can_run_quick()), reason=_can_run_quick() or "-")
def test_quick_run_rootfs_as_rltest_sub() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "--quick", "--only", "run-rootfs", "--no-write", "--json",
         "--rounds", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    (w,) = data["workloads"]
    assert w["name"] == "run-rootfs" and w["identity"] == "rltest-sub" and not w["error"]
    rows = {r["tool"]: r for r in w["cases"][0]["rows"]}
    assert len(rows["rootless"]["samples"]) == 2, rows["rootless"]["error"]
    assert len(rows["python -I -c pass"]["samples"]) == 2
    assert data["meta"]["machine"]["cores"] and data["meta"]["versions"]["rootless"]
