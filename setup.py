"""Build script: the C core is compiled by cffi in out-of-line API mode."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["rootless", "rootless.*"]),
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    # The `rootless` command: see bin/rootless for why it is a script, not an entry point.
    scripts=["bin/rootless"],
)
