"""Harness for every test directory (see docs/testing.md).

Fixtures:
  busybox_rootfs  (session) shared, root-owned, world-readable busybox rootfs path
  cli             CLI as root / rltest-sub / rltest-nosub (ids "root"/"sub"/"nosub")
  cli_factory     make_cli(name) -> CLI, for tests that want a given identity
  pty_run         helpers.run_in_pty
  registry        (session) Debian's docker-registry on 127.0.0.1, plain HTTP, no auth
  registry_auth   (session) the same with TLS (self-signed: trust .ca_cert) and
                  htpasswd basic auth (.username/.password)
  Both are `Registry` objects: .host ("127.0.0.1:PORT"), .url, .ref(name, tag),
  .tls, .ca_cert, .username, .password, .storage, .get(path). Repositories are
  shared by the session: use names unique to your test.
Markers (registered in pyproject.toml): needs_userns, needs_overlay, needs_fuse,
needs_peer("tool", ...). Unmet -> skip; under ROOTLESS_MUST_WORK=1 -> fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (
    MUST_WORK,
    ROOTLESS_BIN,
    TEST_TMPDIR,
    Registry,
    fuse_status,
    has_peer,
    missing,
    overlay_status,
    run_in_pty,
    userns_status,
)
from helpers.rootfs import is_world_readable_tree, make_rootfs
from helpers.users import (
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
    state = f"ROOTLESS_MUST_WORK={int(MUST_WORK)}; euid={os.geteuid()}"
    return [
        f"rootless package: {where}",
        f"rootless CLI: {ROOTLESS_BIN}" + ("" if os.path.exists(ROOTLESS_BIN) else " (MISSING)"),
        f"{state}; identities={','.join(identity_names())}",
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


# ---------------------------------------------------------------- registry

REGISTRY_BIN = "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(storage: str, port: int, tls: tuple[str, str] | None, htpasswd: str | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}/data",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: rootless-test", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def _make_cert(d: str) -> tuple[str, str]:
    cert, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    os.chmod(cert, 0o644)
    return cert, key


def _wait_ready(reg: Registry, proc: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            status, _ = reg.get("/v2/")
            if status == 200:
                return
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.1)
    with open(log, errors="replace") as f:
        pytest.fail(f"docker-registry did not come up on {reg.url}:\n{f.read()[-3000:]}")


def _start_registry(auth: bool) -> Iterator[Registry]:
    if not os.access(REGISTRY_BIN, os.X_OK):
        missing("needs docker-registry (apt-get install docker-registry)")
    storage = tempfile.mkdtemp(prefix="rl-registry-", dir=TEST_TMPDIR)
    os.chmod(storage, 0o755)
    port = _free_port()
    tls = _make_cert(storage) if auth else None
    username, password, htpasswd = None, None, None
    if auth:
        username, password = "rltest", "s3cret-pass"
        htpasswd = os.path.join(storage, "htpasswd")
        out = subprocess.run(
            ["htpasswd", "-Bbn", username, password], check=True, capture_output=True, text=True
        ).stdout
        with open(htpasswd, "w") as f:
            f.write(out)
    config = os.path.join(storage, "config.yml")
    with open(config, "w") as f:
        f.write(_config(storage, port, tls, htpasswd))
    reg = Registry(f"127.0.0.1:{port}", bool(tls), storage, tls[0] if tls else None,
                   username, password)  # fmt: skip
    log = os.path.join(storage, "registry.log")
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", config], stdout=logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(reg, proc, log)
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """docker-registry on 127.0.0.1:<free port>, plain HTTP, no auth."""
    yield from _start_registry(auth=False)


@pytest.fixture(scope="session")
def registry_auth() -> Iterator[Registry]:
    """docker-registry with TLS (self-signed; trust .ca_cert) and basic auth."""
    yield from _start_registry(auth=True)
