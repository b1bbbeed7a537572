"""Signal names and numbers, as docker accepts them (KILL, SIGKILL, 9)."""

from __future__ import annotations

from rootless.errors import UsageError


def parse_signal(text: str) -> int:
    import signal

    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    sig = getattr(signal, name, None)
    if not isinstance(sig, int):
        raise UsageError(f"invalid signal {text!r}")
    return int(sig)
