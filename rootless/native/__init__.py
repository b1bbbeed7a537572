"""The only importer of the compiled C core `rootless._native`.

Checks at import that the C core was built from the same version as the Python
package, and turns `struct rl_error` records into `OSError`s that carry the stage
where the failure happened.
"""

from __future__ import annotations

import os

from rootless._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

try:
    from rootless._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "the rootless C core (rootless._native) is not built: reinstall with `pip install .`"
    ) from exc

CORE_VERSION: str = ffi.string(lib.rl_version()).decode()
if CORE_VERSION != __version__:  # pragma: no cover - only on a broken install
    raise ImportError(
        f"rootless C core version {CORE_VERSION} does not match the package version "
        f"{__version__}: reinstall with `pip install .`"
    )

__all__ = ["CORE_VERSION", "NativeError", "ffi", "lib", "native_error", "new_error", "raise_native_error"]

STAGES = {
    lib.RL_STAGE_NONE: "none",
    lib.RL_STAGE_CLONE: "clone",
    lib.RL_STAGE_SYNC: "sync",
    lib.RL_STAGE_IDMAP: "idmap",
    lib.RL_STAGE_MOUNT: "mount",
    lib.RL_STAGE_PIVOT: "pivot_root",
    lib.RL_STAGE_HOSTNAME: "hostname",
    lib.RL_STAGE_NETWORK: "network",
    lib.RL_STAGE_CWD: "cwd",
    lib.RL_STAGE_USER: "user",
    lib.RL_STAGE_EXEC: "exec",
    lib.RL_STAGE_PTY: "pty",
    lib.RL_STAGE_PROBE: "probe",
    lib.RL_STAGE_INIT: "init",
    lib.RL_STAGE_UNTAR: "untar",
    lib.RL_STAGE_JOIN: "join",
}


class NativeError(OSError):
    """An error reported by the C core: errno, the stage that failed, and what it did."""

    def __init__(self, errnum: int, stage: str, what: str) -> None:
        super().__init__(errnum, os.strerror(errnum) if errnum else "failed")
        self.stage = stage
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"


def native_error(err: object) -> NativeError:
    """Build a NativeError from a `struct rl_error *`."""
    e = err  # cdata
    what = ffi.string(e.msg).decode("utf-8", "replace")  # type: ignore[attr-defined]
    return NativeError(int(e.errnum), STAGES.get(int(e.stage), "unknown"), what)  # type: ignore[attr-defined]


def raise_native_error(err: object) -> NoReturn:
    raise native_error(err)


def new_error() -> object:
    """A fresh `struct rl_error *`."""
    return ffi.new("struct rl_error *")
