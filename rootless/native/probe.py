"""Kernel feature probes (used by `rootless info` and to choose fallbacks)."""

from __future__ import annotations

from rootless.native import NativeError, ffi, lib, native_error


def _check(rc: int, err: object) -> NativeError | None:
    return native_error(err) if rc < 0 else None


def userns() -> NativeError | None:
    """None when an unprivileged user namespace can be created, else why not."""
    err = ffi.new("struct rl_error *")
    return _check(lib.rl_probe_userns(err), err)


def openat2() -> NativeError | None:
    err = ffi.new("struct rl_error *")
    return _check(lib.rl_probe_openat2(err), err)


def overlay(lower: str, upper: str, work: str, merged: str, extra: str = "") -> NativeError | None:
    """Try an overlay mount in a fresh user+mount namespace with the given dirs."""
    err = ffi.new("struct rl_error *")
    rc = lib.rl_probe_overlay(
        lower.encode(), upper.encode(), work.encode(), merged.encode(), extra.encode(), err
    )
    return _check(rc, err)
