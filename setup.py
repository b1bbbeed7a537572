"""Build script: the C core is compiled by cffi in out-of-line API mode, and the
per-container monitor is a small C executable installed as package data."""

import os

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

MONITOR_SOURCE = os.path.join("csrc", "monitor", "rootless-monitor.c")
MONITOR_TARGET = os.path.join("rootless", "libexec", "rootless-monitor")


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
    # The `rootless` command: see bin/rootless for why it is a script, not an entry point.
    scripts=["bin/rootless"],
    package_data={"rootless": ["data/*.conf"]},
    cmdclass={"build_ext": BuildWithMonitor},
)
