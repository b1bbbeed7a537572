"""Assertions on a finished CLI command, shared by the integration tests."""

from __future__ import annotations

import subprocess


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """Its stdout; it must have exited 0 (else show both streams)."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return str(proc.stdout)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int = 125) -> str:
    """The one line a failed command printed: exit `code`, one `rootless: ` line, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rootless: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 125 with exactly one stderr line that names every word in `words`."""
    one_error_line(proc)
    assert proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
