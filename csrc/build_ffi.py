"""cffi out-of-line API-mode build of the C core (`rootless._native`).

The cdef is read verbatim from csrc/rl_api.h plus the module headers listed in API_HEADERS, which are
written to be cdef-parsable. The package version is compiled in as RL_VERSION and
checked against `rootless.__version__` at import.
"""

from __future__ import annotations

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
API_HEADERS = ["rl_untar.h", "rl_job.h", "rl_userns.h"]


def _read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def _package_version() -> str:
    text = open(os.path.join(TOP, "rootless", "_version.py"), encoding="utf-8").read()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if match is None:
        raise RuntimeError("rootless/_version.py has no __version__")
    return match.group(1)


def _cdef() -> str:
    # A module's declarations are compiled in once its source exists.
    parts = [_read(h) for h in API_HEADERS if os.path.exists(os.path.join(HERE, h[:-1] + "c"))]
    parts.insert(0, _read("rl_api.h"))
    text = "\n".join(parts)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "rootless._native",
    '#include "rootless.h"',
    sources=sorted(os.path.relpath(p, TOP) for p in glob.glob(os.path.join(HERE, "rl_*.c"))),
    include_dirs=[os.path.relpath(HERE, TOP)],
    define_macros=[("RL_VERSION", '"%s"' % _package_version()), ("_GNU_SOURCE", "1")],
    extra_compile_args=[
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Werror=implicit-function-declaration",
        "-fvisibility=hidden",
    ],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
