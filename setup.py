"""Build script: the C core is compiled by cffi in out-of-line API mode, the
per-container monitor is a small C executable installed as package data, and the
`rootless` command itself is a small C launcher (csrc/launcher/) built from the
same C core: it runs `run --rm` from a cached plan without starting Python, and
execs the Python CLI for everything else."""

import glob
import os
import re
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext
# after setuptools: its distutils (also where the stdlib has none, Python >= 3.12)
from distutils.command.build_scripts import build_scripts  # noqa: E402

MONITOR_SOURCE = os.path.join("csrc", "monitor", "rootless-monitor.c")
MONITOR_TARGET = os.path.join("rootless", "libexec", "rootless-monitor")
LAUNCHER_MAIN = os.path.join("csrc", "launcher", "main.c")
C_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11",
           "-Werror=implicit-function-declaration"]


def _compiler(existing: object = None) -> object:
    if existing is not None and not isinstance(existing, str):
        return existing
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


def _package_version() -> str:
    with open(os.path.join("rootless", "_version.py"), encoding="utf-8") as f:
        match = re.search(r'__version__\s*=\s*"([^"]+)"', f.read())
    assert match is not None, "rootless/_version.py has no __version__"
    return match.group(1)


def build_launcher(target: str, build_temp: str, compiler: object = None) -> None:
    """Link csrc/launcher/*.c with the C core (csrc/rl_*.c) into the executable `target`."""
    compiler = _compiler(compiler)
    sources = sorted(glob.glob(os.path.join("csrc", "launcher", "*.c")))
    sources += sorted(glob.glob(os.path.join("csrc", "rl_*.c")))
    macros = [("_GNU_SOURCE", "1"), ("RL_VERSION", '"%s"' % _package_version()),
              ("RL_PYTHON", '"%s"' % sys.executable)]
    objects = compiler.compile(sources, output_dir=os.path.join(build_temp, "launcher"),  # type: ignore[attr-defined]
                               macros=macros, include_dirs=["csrc"], extra_postargs=C_FLAGS)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    compiler.link_executable(objects, os.path.basename(target),  # type: ignore[attr-defined]
                             output_dir=os.path.dirname(target) or ".")
    os.chmod(target, 0o755)


class BuildLauncher(build_scripts):
    """The one "script" is the native `rootless` command, compiled, not copied."""

    def run(self) -> None:
        build_temp = self.get_finalized_command("build").build_temp
        build_launcher(os.path.join(self.build_dir, "rootless"), build_temp)


class BuildWithMonitor(build_ext):
    """build_ext that also links csrc/monitor/rootless-monitor.c into rootless/libexec/."""

    def run(self) -> None:
        super().run()
        self._build_monitor()

    def _build_monitor(self) -> None:
        compiler = self.compiler  # the configured CCompiler once build_ext has run
        if compiler is None or isinstance(compiler, str):
            from setuptools._distutils.ccompiler import new_compiler
            from setuptools._distutils.sysconfig import customize_compiler

            compiler = new_compiler()
            customize_compiler(compiler)
        objects = compiler.compile(
            [MONITOR_SOURCE],
            output_dir=self.build_temp,
            extra_postargs=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
        )
        targets = [os.path.join(self.build_lib, MONITOR_TARGET)]
        if self.inplace:
            targets = [MONITOR_TARGET]
        for target in targets:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            compiler.link_executable(objects, os.path.basename(target), output_dir=os.path.dirname(target))
            os.chmod(target, 0o755)


setup(
    packages=find_packages(include=["rootless", "rootless.*"]),
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    # The `rootless` command: a native launcher compiled from csrc/launcher/ by
    # BuildLauncher (not a console-script wrapper: Python's start alone costs more
    # than a whole container start; see docs/architecture.md, "Run plans").
    scripts=[LAUNCHER_MAIN],
    package_data={"rootless": ["data/*.conf"]},
    cmdclass={"build_ext": BuildWithMonitor, "build_scripts": BuildLauncher},
)
