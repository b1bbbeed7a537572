"""A full disk: one clear line, exit 125, nothing half-written visible, space freed,
and the store still works (a small tmpfs as the store)."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.needs_userns


@pytest.fixture
def small_store(cli):
    path = cli.mkdir("smallfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=1m,mode=0700,uid={cli.uid},gid={cli.gid}",
                    "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def test_pull_on_a_full_disk(cli, busybox_image, small_store):
    store = os.path.join(small_store, "store")
    env = {"ROOTLESS_ROOT": store}
    proc = cli.run("pull", busybox_image, env=env)
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "space" in lines[0].lower() or "disk" in lines[0].lower(), lines[0]
    images = cli.run("images", "-q", env=env)
    assert images.returncode == 0 and images.stdout == ""  # nothing half-written is listed
    # the partial layer and blob are gone: the space is free again
    st = os.statvfs(small_store)
    assert st.f_bfree * st.f_frsize > 900 * 1024, "space was not freed"
    # and the store still works for something that fits
    proc = cli.run("images", "--format", "json", env=env)
    assert proc.returncode == 0
