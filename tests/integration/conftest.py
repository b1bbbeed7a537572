"""Integration tests drive the installed `rootless` CLI end to end.

Fixtures come from tests/conftest.py: cli, cli_factory, busybox_rootfs, pty_run,
registry, registry_auth (see docs/testing.md). Here: every integration test
fails (not skips) with a clear message when the CLI under test is missing.
"""

from __future__ import annotations

import os

import pytest
from helpers import ROOTLESS_BIN


@pytest.fixture(autouse=True)
def _rootless_cli_installed() -> None:
    if not os.path.exists(ROOTLESS_BIN):
        pytest.fail(
            f"rootless CLI not found at {ROOTLESS_BIN}: run `sudo bash scripts/setup-host.sh` "
            "or set ROOTLESS_BIN",
            pytrace=False,
        )


DEBIAN_CACHE = "/var/cache/rootless-tests/debian-bookworm"


@pytest.fixture(scope="session")
def build_debian(registry, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Debian bookworm (debootstrap minbase, cached in /var/cache/rootless-tests) in
    the test registry as test/build-debian:bookworm; its reference. Used by the
    build tests (test_acceptance.py has its own `debian` fixture)."""
    import subprocess

    from helpers import require
    from helpers.images import Layout, gnu_tar_layer, push

    if not os.path.isdir(os.path.join(DEBIAN_CACHE, "usr", "bin")):
        require(os.path.exists("/usr/sbin/debootstrap"), "debootstrap is not installed")
        tmp = DEBIAN_CACHE + ".new"
        subprocess.run(["rm", "-rf", tmp], check=True)
        os.makedirs(os.path.dirname(DEBIAN_CACHE), exist_ok=True)
        mirror = os.environ.get("ROOTLESS_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp, mirror],
                              capture_output=True, text=True, timeout=900)
        require(proc.returncode == 0, f"debootstrap failed (no Debian mirror?): {proc.stderr[-500:]}")
        os.rename(tmp, DEBIAN_CACHE)
    layout = Layout(tmp_path_factory.mktemp("build-debian"))
    img = layout.image([(gnu_tar_layer(DEBIAN_CACHE), "gzip")], cmd=["bash"])
    layout.tag("bookworm", img.manifest)
    ref = registry.ref("test/build-debian", "bookworm")
    push(layout, "bookworm", ref)
    return ref


@pytest.fixture(scope="session")
def busybox_image(registry, busybox_rootfs, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A two-layer busybox image (the rootfs, then /etc/motd and /srv) in the test
    registry; returns its reference."""
    from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push

    layout = Layout(tmp_path_factory.mktemp("ctr-image"))
    base = gnu_tar_layer(busybox_rootfs)
    top = layer_tar([TarEntry("etc/motd", data=b"layer two\n"), TarEntry("srv", kind="dir")])
    img = layout.image([(base, "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/ctr-busybox")
    push(layout, "latest", ref)
    return ref
