"""The C core under AddressSanitizer + UndefinedBehaviorSanitizer: runs
scripts/sanitize.sh (a separate gcc -fsanitize=address,undefined build of the
cffi extension and the monitor, then tests/native, the untar corpus and its
mutants, the monitor test and the store's C jobs against it). Any sanitizer
report fails. Skipped without gcc's sanitizer runtimes (fails under
ROOTLESS_MUST_WORK=1); ROOTLESS_SANITIZE=0 skips it on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sanitize.sh"
UNAVAILABLE = 2  # sanitize.sh: no compiler or sanitizer runtime


def test_c_core_under_asan_and_ubsan() -> None:
    if os.environ.get("ROOTLESS_SANITIZE") == "0":
        pytest.skip("ROOTLESS_SANITIZE=0")
    venv = os.path.dirname(os.path.dirname(sys.executable))
    env = {**os.environ, "ROOTLESS_VENV": venv}
    env.pop("PYTHONPATH", None)  # the script puts its own build first
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, errors="replace",
                          env=env, cwd=REPO, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode == UNAVAILABLE:
        require(False, output.strip().splitlines()[-1] if output.strip() else "sanitizers unavailable")
    print(output[-2000:])
    assert proc.returncode == 0, f"scripts/sanitize.sh exited {proc.returncode}\n{output[-12000:]}"
