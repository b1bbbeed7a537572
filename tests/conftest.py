"""Harness for every test directory (see docs/testing.md).

Fixtures:
  busybox_rootfs  (session) shared, root-owned, world-readable busybox rootfs path
  cli             CLI as root / rltest-sub / rltest-nosub (ids "root"/"sub"/"nosub")
  cli_factory     make_cli(name) -> CLI, for tests that want a given identity
  pty_run         helpers.run_in_pty
Markers (registered in pyproject.toml): needs_userns, needs_overlay, needs_fuse,
needs_peer("tool", ...). Unmet -> skip; under ROOTLESS_MUST_WORK=1 -> fail.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (  # noqa: E402
    MUST_WORK,
    ROOTLESS_BIN,
    TEST_TMPDIR,
    fuse_status,
    has_peer,
    missing,
    overlay_status,
    run_in_pty,
    userns_status,
)
from helpers.rootfs import is_world_readable_tree, make_rootfs  # noqa: E402
from helpers.users import (  # noqa: E402
    CLI,
    HarnessError,
    can_switch_users,
    identity_names,
    make_cli,
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        import rootless

        where = f"{rootless.__version__} at {os.path.dirname(rootless.__file__)}"
    except Exception as exc:  # noqa: BLE001 - a header must not break collection
        where = f"not importable ({exc})"
    return [
        f"rootless package: {where}",
        f"rootless CLI: {ROOTLESS_BIN}" + ("" if os.path.exists(ROOTLESS_BIN) else " (MISSING)"),
        f"ROOTLESS_MUST_WORK={'1' if MUST_WORK else '0'}; euid={os.geteuid()}; "
        f"identities={','.join(identity_names())}",
    ]


# ---------------------------------------------------------------- markers


def _check_markers(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_userns"):
        ok, why = userns_status()
        if not ok:
            missing(f"needs unprivileged user namespaces: {why}")
    if item.get_closest_marker("needs_overlay"):
        ok, why = overlay_status()
        if not ok:
            missing(f"needs overlayfs in a user namespace: {why}")
    if item.get_closest_marker("needs_fuse"):
        ok, why = fuse_status()
        if not ok:
            missing(f"needs fuse-overlayfs: {why}")
    for marker in item.iter_markers("needs_peer"):
        if not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: needs_peer needs tool names")
        for tool in marker.args:
            if not has_peer(tool):
                missing(f"needs peer tool {tool!r} (install it: scripts/setup-host.sh)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _check_markers(item)


# ---------------------------------------------------------------- rootfs


@pytest.fixture(scope="session")
def busybox_rootfs() -> Iterator[str]:
    """A root-owned, world-readable busybox rootfs shared by the session (read only!)."""
    parent = tempfile.mkdtemp(prefix="rl-rootfs-", dir=TEST_TMPDIR)
    os.chmod(parent, 0o755)
    path = make_rootfs(os.path.join(parent, "rootfs"))
    if not is_world_readable_tree(path):
        pytest.fail(f"{path} is not reachable by other users; set ROOTLESS_TEST_TMPDIR")
    yield path
    shutil.rmtree(parent, ignore_errors=True)


# ---------------------------------------------------------------- cli


def _new_cli(name: str) -> CLI:
    if not os.path.exists(ROOTLESS_BIN):
        pytest.fail(
            f"rootless CLI not found at {ROOTLESS_BIN}: run `sudo bash scripts/setup-host.sh` "
            "or set ROOTLESS_BIN",
            pytrace=False,
        )
    if not can_switch_users():
        msg = "the cli fixture switches users and needs root: sudo bash scripts/test.sh"
        if MUST_WORK:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    if not is_world_readable_tree(TEST_TMPDIR):
        pytest.fail(f"{TEST_TMPDIR} is not traversable by others; set ROOTLESS_TEST_TMPDIR")
    try:
        return make_cli(name)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def cli_factory() -> Iterator[Callable[[str], CLI]]:
    """make("root"|"sub"|"nosub") -> CLI with a fresh store; cleaned up after the test."""
    made: list[CLI] = []

    def make(name: str) -> CLI:
        c = _new_cli(name)
        made.append(c)
        return c

    yield make
    for c in made:
        c.cleanup()


@pytest.fixture(params=identity_names())
def cli(request: pytest.FixtureRequest, cli_factory: Callable[[str], CLI]) -> CLI:
    """rootless as root, rltest-sub and rltest-nosub (test ids "root", "sub", "nosub")."""
    return cli_factory(request.param)


@pytest.fixture
def pty_run() -> Callable[..., tuple[str, int]]:
    """helpers.run_in_pty(argv, env, script, timeout, *, cwd, owner, rows, cols)."""
    return run_in_pty
