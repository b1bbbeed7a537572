"""The package type-checks under `mypy --strict` (pyproject.toml's [tool.mypy];
the cffi boundary in rootless/native is typed loosely on purpose)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mypy_strict() -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:
        if os.environ.get("ROOTLESS_MUST_WORK") == "1":
            pytest.fail("mypy is not installed (scripts/setup-host.sh installs it)")
        pytest.skip("mypy is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml",
         "--cache-dir", "/tmp/rootless-mypy-cache", "rootless"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
