"""Two users on one host, with their default paths (no ROOTLESS_ROOT or
ROOTLESS_RUNROOT: ~/.local/share/rootless and /tmp/rootless-<uid>): neither
sees the other's images or containers, neither can point --root/--runroot at
the other's directories (one clear line, exit 125: permission), nor change or
kill the other's containers; both directories are private (0700).

The test users' real home directories hold the stores: the test only adds
uniquely named images and containers and removes them afterwards (and the
store itself if it made it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator

import pytest
from helpers.users import CLI, identity_names

pytestmark = [pytest.mark.needs_userns, pytest.mark.needs_overlay]

DEFAULTS = {"ROOTLESS_ROOT": None, "ROOTLESS_RUNROOT": None, "XDG_RUNTIME_DIR": None,
            "XDG_DATA_HOME": None}


class User:
    """One test user working with the default store and runroot."""

    def __init__(self, cli: CLI) -> None:
        self.cli = cli
        self.root = os.path.join(cli.home, ".local", "share", "rootless")
        self.runroot = f"/tmp/rootless-{cli.uid}"
        self.made_root = not os.path.exists(self.root)
        # mkdtemp's suffix may end in '_' or hold '__', which a repository name
        # refuses; a digest of it is unique just the same and always valid
        suffix = hashlib.sha256(cli.test_id.encode()).hexdigest()[:8]
        self.tag = f"twousers/{cli.name}-{suffix}"
        self.name = f"tu-{cli.name}-{suffix}"

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, env=DEFAULTS, **kw)  # type: ignore[arg-type]

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"{self.cli.name}: {args}: exit {proc.returncode}: {proc.stderr}"
        return proc.stdout

    def cleanup(self, image: str) -> None:
        self.run("rm", "-f", self.name)
        self.run("rmi", self.tag, image)
        if self.made_root:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def users(cli_factory: Callable[[str], CLI], busybox_image: str) -> Iterator[tuple[User, User]]:
    names = identity_names()
    if "sub" not in names or "nosub" not in names:
        pytest.skip("needs both test users (ROOTLESS_TEST_IDENTITIES)")
    a, b = User(cli_factory("sub")), User(cli_factory("nosub"))
    try:
        yield a, b
    finally:
        for u in (a, b):
            u.cleanup(busybox_image)


def refused(proc: subprocess.CompletedProcess[str], what: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 125, f"{what}: exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert len(lines) == 1 and "Traceback" not in proc.stderr, f"{what}: {proc.stderr}"
    assert "permission denied" in lines[0].lower(), f"{what}: {lines[0]}"
    return lines[0]


def test_users_keep_to_their_own_stores(users: tuple[User, User], busybox_image: str) -> None:
    a, b = users
    cids = {}
    for u in (a, b):
        u.ok("pull", "-q", busybox_image)
        u.ok("tag", busybox_image, u.tag)
        cids[u] = u.ok("run", "-d", "--name", u.name, u.tag, "sleep", "60").strip()

    # private directories, owned by their user
    for u in (a, b):
        for d in (u.root, u.runroot):
            st = os.stat(d)
            assert st.st_uid == u.cli.uid and stat.S_IMODE(st.st_mode) == 0o700, f"{d}: {oct(st.st_mode)}"

    # neither sees the other's images or containers
    for me, other in ((a, b), (b, a)):
        images = me.ok("images", "--format", "{{.Repository}}")
        assert me.tag in images and other.tag not in images, images
        ps = me.ok("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}")
        assert f"{cids[me]} {me.name}" in ps and cids[other] not in ps and other.name not in ps, ps

    # pointing at the other's directories: a clear refusal
    for me, other in ((a, b), (b, a)):
        theirs = ("--root", other.root, "--runroot", other.runroot)
        refused(me.run("--root", other.root, "images"), "images on the other's store")
        refused(me.run("--root", other.root, "pull", "-q", busybox_image), "pull into the other's store")
        refused(me.run("--root", other.root, "rmi", other.tag), "rmi in the other's store")
        refused(me.run("--root", other.root, "ps", "-a"), "ps on the other's store")
        refused(me.run("--runroot", other.runroot, "ps", "-a"), "ps with the other's runroot")
        refused(me.run("--runroot", other.runroot, "run", "--rm", me.tag, "true"), "run in the other's runroot")
        for cmd in (("rm", "-f"), ("kill",), ("stop", "-t", "1")):
            refused(me.run(*theirs, *cmd, cids[other]), f"{cmd[0]} of the other's container")
        # the other's container is untouched
        status = other.ok("ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}")
        assert f"{cids[other]} Up" in status, status

    for u in (a, b):
        u.ok("rm", "-f", u.name)
        assert u.name not in u.ok("ps", "-a", "--format", "{{.Names}}")
