"""diff, commit, cp and export, as every identity (root, sub, nosub).

The image: the busybox rootfs plus a layer with known content (an opaque-able
directory, a directory to delete, a 0700 directory of uid 1000 that only a
namespace with the full mapping can read on the host).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="session")
def image(registry, busybox_rootfs, tmp_path_factory):
    layout = Layout(tmp_path_factory.mktemp("diff-image"))
    base = gnu_tar_layer(busybox_rootfs)
    top = layer_tar([
        TarEntry("etc/motd", data=b"layer two\n"),
        TarEntry("keep", kind="dir"),
        TarEntry("keep/f", data=b"f\n"),
        TarEntry("keep/g", data=b"g\n"),
        TarEntry("del", kind="dir"),
        TarEntry("del/x", data=b"x\n"),
        TarEntry("opq", kind="dir"),
        TarEntry("opq/a", data=b"a\n"),
        TarEntry("opq/b", data=b"b\n"),
        TarEntry("opq/sub", kind="dir"),
        TarEntry("opq/sub/c", data=b"c\n"),
        TarEntry("app", kind="dir", mode=0o700, uid=1000, gid=1000),
        TarEntry("app/data", data=b"secret\n", mode=0o600, uid=1000, gid=1000),
    ])  # fmt: skip
    img = layout.image([(base, "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/diff-busybox")
    push(layout, "latest", ref)
    return ref


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


CHANGES = (
    "echo new > /added; echo more >> /etc/motd; rm /keep/f; rm -rf /del; "
    "rm -rf /opq && mkdir /opq && echo A > /opq/a; "
    "mkdir -p /newdir/sub && touch /newdir/sub/f; echo n > /app/new"
)
EXPECTED_DIFF = [
    "A /added",
    "C /app",
    "A /app/new",
    "D /del",
    "C /etc",
    "C /etc/motd",
    "C /keep",
    "D /keep/f",
    "A /newdir",
    "A /newdir/sub",
    "A /newdir/sub/f",
    "C /opq",
    "C /opq/a",
    "D /opq/b",
    "D /opq/sub",
]


def test_diff_known_changes(cli, image):
    ok(cli.run("run", "--name", "d", image, "sh", "-c", CHANGES))
    assert ok(cli.run("diff", "d")).splitlines() == EXPECTED_DIFF
    assert ok(cli.run("container", "diff", "d")).splitlines() == EXPECTED_DIFF


def test_diff_fresh_and_errors(cli, image):
    ok(cli.run("create", "--name", "fresh", image, "true"))
    assert ok(cli.run("diff", "fresh")) == ""
    proc = cli.run("diff", "nope")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and "no such container" in proc.stderr
