"""The acceptance scenario of the containers issue, word for word, with no root:

1. `run -it debian bash`; inside `apt-get update && apt-get install -y git`; `exit`
2. `ps -a` shows the container Exited, with its generated name
3. `diff` shows the A and C changes
4. `commit` it to a new image; `images` shows the image
5. `run` the new image; `git --version` works
6. `restart` and `attach` the first container; `rm` it; `rmi` the new image

The Debian image is a debootstrap tree (cached in /var/cache/rootless-tests), served
by the test registry. apt reaches Debian's mirror through the host network.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from helpers import require
from helpers.checks import ok
from helpers.images import Layout, gnu_tar_layer, push

pytestmark = [pytest.mark.needs_userns, pytest.mark.timeout(900)]

CACHE = "/var/cache/rootless-tests/debian-bookworm"
MIRROR = os.environ.get("ROOTLESS_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _debootstrap() -> str:
    if os.path.isdir(os.path.join(CACHE, "usr", "bin")):
        return CACHE
    require(os.path.exists("/usr/sbin/debootstrap"), "debootstrap is not installed")
    tmp = CACHE + ".new"
    subprocess.run(["rm", "-rf", tmp], check=True)
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    proc = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", tmp, MIRROR],
                          capture_output=True, text=True, timeout=900)
    require(proc.returncode == 0, f"debootstrap failed (no Debian mirror?): {proc.stderr[-500:]}")
    os.rename(tmp, CACHE)
    return CACHE


@pytest.fixture(scope="session")
def debian(registry, tmp_path_factory):
    tree = _debootstrap()
    layout = Layout(tmp_path_factory.mktemp("debian"))
    img = layout.image([(gnu_tar_layer(tree), "none")], cmd=["bash"])
    layout.tag("bookworm", img.manifest)
    ref = registry.ref("library/debian", "bookworm")
    push(layout, "bookworm", ref)
    return ref


@pytest.mark.parametrize("who", ["sub", "nosub"])
def test_docker_tutorial(cli_factory, debian, pty_run, who):
    cli = cli_factory(who)
    extra = () if cli.has_subids else ("--fakeroot",)
    prompt = r"root@[^:]+:/# "
    # 1. an interactive shell; apt-get inside; exit
    out, status = pty_run(
        cli.argv("run", "-it", *extra, debian, "bash"), cli.environ(),
        [(prompt, "apt-get update && apt-get install -y --no-install-recommends git && echo APT-O''K\r"),
         (r"APT-OK\r?\n.*" + prompt, "exit\r")],
        timeout=600, owner=(cli.uid, cli.gid), rows=40, cols=120,
    )
    assert status == 0, out[-3000:]
    # 2. ps -a: Exited, generated name
    line = ok(cli.run("ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Command}}")).strip()
    name, state, command = line.split("|")
    assert re.fullmatch(r"[a-z]+_[a-z]+\d*", name)
    assert state.startswith("Exited (0)") and "bash" in command
    # 3. diff: A and C changes
    changes = ok(cli.run("diff", name)).splitlines()
    assert "A /usr/bin/git" in changes
    assert "C /usr/bin" in changes
    assert any(c.startswith("C /var/lib/dpkg") for c in changes)
    # 4. commit; images shows it
    image_id = ok(cli.run("commit", name, "tutorial/git:v1")).strip()
    assert image_id.startswith("sha256:")
    listing = ok(cli.run("images", "--format", "{{.Repository}}:{{.Tag}}"))
    assert "tutorial/git:v1" in listing
    # 5. run the new image: git works
    assert ok(cli.run("run", "--rm", *extra, "tutorial/git:v1", "git", "--version")).startswith("git version")
    # 6. restart + attach the first container, rm it, rmi the image
    prompts = ok(cli.run("logs", name)).count("root@")
    ok(cli.run("restart", name))
    # bash flushes pending terminal input when readline starts: attach once it is ready
    deadline = time.monotonic() + 60
    while ok(cli.run("logs", name)).count("root@") <= prompts and time.monotonic() < deadline:
        time.sleep(0.1)
    out, status = pty_run(cli.argv("attach", name), cli.environ(),
                          [(None, "\r"), (prompt, "git --version; exit 0\r")],
                          timeout=60, owner=(cli.uid, cli.gid))
    assert status == 0 and "git version" in out, out
    ok(cli.run("rm", name))
    proc = cli.run("rmi", "tutorial/git:v1")
    assert proc.returncode == 0, proc.stderr
    assert "tutorial/git" not in ok(cli.run("images"))
