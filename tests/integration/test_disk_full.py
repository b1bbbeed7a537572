"""A full disk: one clear line, exit 125, nothing half-written visible, space freed,
and the store still works (a small tmpfs as the store): pull, commit, build."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.needs_userns


def _tmpfs(cli, name: str, size: str):  # type: ignore[no-untyped-def]
    """A private tmpfs of `size` owned by the test's user (a fixture's body)."""
    path = cli.mkdir(name)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700,uid={cli.uid},gid={cli.gid}",
                    "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


@pytest.fixture
def small_store(cli):
    yield from _tmpfs(cli, "smallfs", "1m")


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


def _fill(path: str, leave: int) -> str:
    """Take all but `leave` bytes of the filesystem at `path`; returns the filler's path."""
    st = os.statvfs(path)
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(4096, st.f_bavail * st.f_frsize - leave))
    return filler


def _one_line_no_space(proc) -> None:  # type: ignore[no-untyped-def]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 125 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left on the device holding" in lines[0], lines[0]


@pytest.fixture
def roomy_store(cli):
    """A 24 MB tmpfs: room for the image, then filled up by the test."""
    yield from _tmpfs(cli, "fs24m", "24m")


@pytest.mark.needs_overlay
def test_commit_and_build_on_a_full_disk(cli, busybox_image, roomy_store):
    from helpers import storecheck

    store = os.path.join(roomy_store, "store")
    env = {"ROOTLESS_ROOT": store}
    assert cli.run("pull", "-q", busybox_image, env=env).returncode == 0
    big = "head -c 3000000 /dev/urandom > /big"  # does not compress: a 3 MB blob and layer
    proc = cli.run("run", "--name", "c1", busybox_image, "sh", "-c", big, env=env)
    assert proc.returncode == 0, proc.stderr
    ctx = cli.mkdir("ctx")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {busybox_image}\nCOPY big /big\n")
    with open(os.path.join(ctx, "big"), "wb") as f:
        f.write(os.urandom(3_000_000))
    filler = _fill(roomy_store, 256 * 1024)
    free = os.statvfs(roomy_store).f_bavail

    for args in (("commit", "c1", "full/commit:1"), ("build", "-q", "-t", "full/build:1", ctx)):
        proc = cli.run(*args, env=env)
        _one_line_no_space(proc)
        assert "full/" not in cli.run("images", env=env).stdout  # nothing half-written is listed
        assert not storecheck.problems(store)
        assert os.statvfs(roomy_store).f_bavail >= free - 8, f"{args[0]} did not free its partial files"

    os.unlink(filler)  # with room again, both work
    for args in (("commit", "c1", "full/commit:1"), ("build", "-q", "-t", "full/build:1", ctx)):
        proc = cli.run(*args, env=env)
        assert proc.returncode == 0, proc.stderr
    proc = cli.run("run", "--rm", "full/build:1", "sh", "-c", "wc -c < /big", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "3000000", proc.stderr
    cli.run("rm", "c1", env=env)
