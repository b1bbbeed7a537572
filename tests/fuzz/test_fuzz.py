"""The fuzz harnesses (tests/fuzz/fuzz_*.py) in the test suite.

- replay: every file of tests/fuzz/corpus/<harness>/ through the harness'
  `test_one_input` (fast; always runs; the regression inputs live there too);
- fuzz: each harness under atheris (libFuzzer) for ROOTLESS_FUZZ_SECONDS
  seconds (default 20; 0 skips) in a subprocess that imports rootless the way
  this run does. A crash fails the test with the input (base64) in the
  message; the input is kept under ROOTLESS_FUZZ_ARTIFACTS (default
  /tmp/rootless-fuzz-artifacts/<harness>/). Reproduce one with
  `python -P tests/fuzz/fuzz_<harness>.py CRASH-FILE`;
- mutants: random mutants of the corpus through the harness in this process
  for ROOTLESS_MUTATE_SECONDS (default 0: skipped). scripts/sanitize.sh runs
  it on the ASan build, where libFuzzer's coverage guidance does not work.
"""

from __future__ import annotations

import base64
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import require

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
HARNESSES = ("untar", "reference", "manifest", "dockerfile")
MAX_LEN = {"untar": 65536, "manifest": 16384, "dockerfile": 8192, "reference": 1024}


def fuzz_seconds() -> int:
    return int(os.environ.get("ROOTLESS_FUZZ_SECONDS", "20"))


def corpus_files() -> list[tuple[str, Path]]:
    return [(h, p) for h in HARNESSES for p in sorted((CORPUS / h).iterdir()) if p.is_file()]


def harness(name: str):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(f"fuzz_{name}")
    finally:
        sys.path.remove(str(HERE))


@pytest.mark.parametrize(("name", "path"), corpus_files(), ids=lambda v: getattr(v, "name", v))
def test_replay_corpus(name: str, path: Path) -> None:
    harness(name).test_one_input(path.read_bytes())


def test_every_harness_has_a_corpus() -> None:
    for name in HARNESSES:
        assert (HERE / f"fuzz_{name}.py").is_file()
        assert len(list((CORPUS / name).iterdir())) >= 5, name


NODEV = 'mount --bind "$1" "$1" && mount -o remount,bind,nodev "$1" && shift && exec "$@"'


def nodev_sandbox(scratch: Path) -> list[str]:
    """As root: an argv prefix that runs the command in a private mount namespace
    where `scratch` is mounted nodev, so the untar harness may create real device
    nodes (fuzz_untar forces no_devices elsewhere). [] when not root or unavailable."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", NODEV, "sh", str(scratch)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else []


def _artifact_dir(name: str) -> Path:
    base = Path(os.environ.get("ROOTLESS_FUZZ_ARTIFACTS", "/tmp/rootless-fuzz-artifacts"))
    out = base / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.mark.parametrize("name", HARNESSES)
def test_mutants(name: str) -> None:
    seconds = float(os.environ.get("ROOTLESS_MUTATE_SECONDS", "0"))
    if seconds <= 0:
        pytest.skip("ROOTLESS_MUTATE_SECONDS=0 (scripts/sanitize.sh sets it)")
    import random
    import time

    import fuzzlib

    mod = harness(name)
    seeds = [p.read_bytes() for _, p in corpus_files() if p.parent.name == name]
    dictionary = HERE / f"{name}.dict"
    tokens = fuzzlib.load_dict(str(dictionary)) if dictionary.is_file() else []
    rng = random.Random(int(os.environ.get("ROOTLESS_MUTATE_SEED", "1")))
    deadline = time.monotonic() + seconds
    count = 0
    for data in fuzzlib.mutants(seeds, tokens, rng, getattr(mod, "hot_position", None)):
        if time.monotonic() > deadline:
            break
        count += 1
        try:
            mod.test_one_input(data)
        except BaseException as exc:
            crash = _artifact_dir(f"{name}-mutants") / f"crash-{count}"
            crash.write_bytes(data)
            raise AssertionError(f"mutant {count} crashed: {exc!r}\n{_describe(crash.parent)}") from exc
    print(f"{name}: {count} mutants")


def _describe(artifacts: Path) -> str:
    lines = []
    for crash in sorted(artifacts.iterdir()):
        data = crash.read_bytes()
        lines.append(f"input {crash} ({len(data)} bytes), base64:")
        lines.append(base64.b64encode(data[:4096]).decode() + (" ..." if len(data) > 4096 else ""))
    return "\n".join(lines) or "no crashing input saved"


@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz(name: str) -> None:
    seconds = fuzz_seconds()
    if seconds <= 0:
        pytest.skip("ROOTLESS_FUZZ_SECONDS=0")
    try:
        import atheris  # noqa: F401
    except ImportError:
        require(False, "needs atheris (pip install atheris; scripts/setup-host.sh installs it)")
    import rootless

    artifacts = _artifact_dir(name)
    with tempfile.TemporaryDirectory(prefix=f"rl-fuzz-{name}-") as tmp:
        work = Path(tmp, "corpus")  # new inputs go here; the seed corpus stays read-only
        work.mkdir()
        scratch = Path(tmp, "scratch")
        scratch.mkdir()
        argv = [sys.executable, "-P", str(HERE / f"fuzz_{name}.py"),
                f"-max_total_time={seconds}", f"-max_len={MAX_LEN[name]}", "-timeout=20",
                "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
                str(work), str(CORPUS / name)]
        dictionary = HERE / f"{name}.dict"
        if dictionary.is_file():
            argv.insert(3, f"-dict={dictionary}")
        if name == "untar":
            argv = nodev_sandbox(scratch) + argv
        env = {**os.environ, "ROOTLESS_FUZZ_EXPECT_PACKAGE": os.path.dirname(rootless.__file__),
               "ROOTLESS_FUZZ_SCRATCH": str(scratch)}
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env,
                              timeout=seconds + 120, cwd=tmp, check=False)
    output = proc.stdout + proc.stderr
    stats = [line for line in output.splitlines() if line.startswith("stat::")]
    print(f"fuzz_{name}: {' '.join(stats)}")
    assert proc.returncode == 0 and not any(artifacts.iterdir()), (
        f"fuzz_{name} exited {proc.returncode}\n{_describe(artifacts)}\n{_failure(output)}"
    )


def _failure(output: str) -> str:
    """The Python traceback (or sanitizer report) of the crash, and the output's tail."""
    parts = []
    for marker in ("=== Uncaught Python exception", "ERROR: AddressSanitizer", "runtime error:",
                   "ERROR: libFuzzer"):
        at = output.find(marker)
        if at >= 0:
            parts.append(f"--- from {marker!r}\n{output[at : at + 4000]}")
            break
    parts.append(f"--- output (tail)\n{output[-3000:]}")
    return "\n".join(parts)
