"""Test harness helpers shared by every test directory.

Import as `from helpers import ...` (tests/conftest.py puts tests/ on sys.path).

- ROOTLESS_BIN: the CLI under test ($ROOTLESS_BIN, else the venv's).
- MUST_WORK: True when ROOTLESS_MUST_WORK=1 (CI): a test that would be skipped
  for a missing kernel feature or tool fails instead (see `require`).
- require(condition, reason): skip (or, under MUST_WORK, fail) unless condition.
- has_userns(), has_overlay(), has_fuse(), has_peer(name): probes behind the
  needs_* markers; they use the real kernel and real tools, never mocks.
- run_in_pty(argv, env, script, timeout): drive a command through a real pty.
- Registry: what the registry / registry_auth fixtures yield.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import ssl
import struct
import subprocess
import tempfile
import termios
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NoReturn

import pytest

from helpers.rootfs import make_rootfs

__all__ = [
    "MUST_WORK",
    "ROOTLESS_BIN",
    "TEST_TMPDIR",
    "Registry",
    "has_fuse",
    "has_overlay",
    "has_peer",
    "has_userns",
    "make_rootfs",
    "missing",
    "require",
    "run_in_pty",
]

ROOTLESS_BIN: str = os.environ.get("ROOTLESS_BIN") or "/opt/rootless-venv/bin/rootless"
MUST_WORK: bool = os.environ.get("ROOTLESS_MUST_WORK") == "1"
# Where per-test directories go: must be traversable by the test users
# (pytest's tmp_path, under a 0700 /tmp/pytest-of-root, is not).
TEST_TMPDIR: str = os.environ.get("ROOTLESS_TEST_TMPDIR", "/tmp")
PROBE_USER = "rltest-nosub"


def missing(reason: str) -> NoReturn:
    """A kernel feature or tool is missing: skip, or fail under ROOTLESS_MUST_WORK=1."""
    if MUST_WORK:
        pytest.fail(f"ROOTLESS_MUST_WORK=1 and {reason}", pytrace=False)
    pytest.skip(reason)


def require(condition: object, reason: str) -> None:
    """Skip the test (fail under ROOTLESS_MUST_WORK=1) unless `condition` is true."""
    if not condition:
        missing(reason)


# ---------------------------------------------------------------- probes


def _as_probe_user() -> list[str]:
    """argv prefix that runs a probe as an unprivileged user (if we are root)."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(PROBE_USER)
    except KeyError:
        return []
    return ["setpriv", f"--reuid={PROBE_USER}", f"--regid={PROBE_USER}", "--init-groups"]


def _probe(argv: list[str], cwd: str | None = None) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            _as_probe_user() + argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=cwd or "/",
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def _probe_dir() -> str:
    path = tempfile.mkdtemp(prefix="rl-probe-", dir=TEST_TMPDIR)
    os.chmod(path, 0o755)
    for sub in ("lower", "upper", "work", "merged"):
        os.mkdir(os.path.join(path, sub))
    if _as_probe_user():
        import pwd

        pw = pwd.getpwnam(PROBE_USER)
        for parent, dirs, _ in os.walk(path):
            for d in [parent] + [os.path.join(parent, x) for x in dirs]:
                os.chown(d, pw.pw_uid, pw.pw_gid)
    with open(os.path.join(path, "lower", "f"), "w") as f:
        f.write("x")
    return path


@cache
def userns_status() -> tuple[bool, str]:
    """Can an unprivileged user create a user namespace (and map itself to root)?"""
    return _probe(["unshare", "--user", "--map-root-user", "true"])


def has_userns() -> bool:
    return userns_status()[0]


@cache
def overlay_status() -> tuple[bool, str]:
    """Can an unprivileged user mount kernel overlayfs (userxattr) in a user namespace?"""
    if not has_userns():
        return False, "no unprivileged user namespaces"
    d = _probe_dir()
    try:
        opts = f"lowerdir={d}/lower,upperdir={d}/upper,workdir={d}/work,userxattr"
        script = f"mount -t overlay overlay -o {opts} {d}/merged && cat {d}/merged/f"
        return _probe(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def has_overlay() -> bool:
    return overlay_status()[0]


@cache
def fuse_status() -> tuple[bool, str]:
    """Can an unprivileged user mount fuse-overlayfs in a user namespace?"""
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse does not exist"
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        return False, "/dev/fuse is not read-writable by others (chmod 666 /dev/fuse)"
    if not shutil.which("fuse-overlayfs"):
        return False, "fuse-overlayfs is not installed"
    if not has_userns():
        return False, "no unprivileged user namespaces"
    d = _probe_dir()
    try:
        opts = f"lowerdir={d}/lower,upperdir={d}/upper,workdir={d}/work"
        script = (
            f"fuse-overlayfs -o {opts} {d}/merged && cat {d}/merged/f; rc=$?; "
            f"umount {d}/merged; exit $rc"
        )
        return _probe(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def has_fuse() -> bool:
    return fuse_status()[0]


def has_peer(name: str) -> bool:
    """Is the peer tool `name` (skopeo, umoci, podman, crun, ...) installed?"""
    return shutil.which(name, path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin") is not None


# ---------------------------------------------------------------- pty

Script = Sequence[tuple[str | bytes | None, bytes | str]]


class PtyTimeout(AssertionError):
    pass


def _set_ctty() -> None:  # runs in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read(fd: int, until: float) -> bytes | None:
    """Read what is there within `until`; b'' on timeout, None at EOF."""
    wait = max(0.0, until - time.monotonic())
    ready, _, _ = select.select([fd], [], [], wait)
    if not ready:
        return b""
    try:
        data = os.read(fd, 65536)
    except OSError as exc:
        if exc.errno == errno.EIO:  # every slave fd closed
            return None
        raise
    return data or None


def run_in_pty(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    script: Script = (),
    timeout: float = 30,
    *,
    cwd: str | None = None,
    owner: tuple[int, int] | None = None,
    rows: int = 24,
    cols: int = 80,
) -> tuple[str, int]:
    """Run argv with a real pty as its controlling terminal and stdin/stdout/stderr.

    `script` is a list of (expect_regex, send): wait until the regex matches the
    output that came after the previous match (None or "" = don't wait), then
    write `send` to the terminal. Afterwards, read until the command exits.
    Returns (output, exit_status) with output decoded as UTF-8 (errors replaced,
    terminal \\r\\n kept) and exit_status as subprocess.Popen.returncode gives it
    (negative = killed by that signal). `owner` chowns the pty slave (as login
    does) so a command running as another user can reopen its tty by name.
    On timeout the command's session is killed and PtyTimeout (an
    AssertionError) is raised with the output so far.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    if owner is not None:
        os.fchown(slave, owner[0], owner[1])
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_set_ctty,  # noqa: PLW1509 - TIOCSCTTY needs it
        )
    finally:
        os.close(slave)
    deadline = time.monotonic() + timeout
    out = bytearray()
    try:
        _follow_script(master, proc, out, script, deadline)
        _drain(master, proc, out, deadline)
        status = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (PtyTimeout, subprocess.TimeoutExpired) as exc:
        _kill_session(proc)
        text = out.decode("utf-8", "replace")
        raise PtyTimeout(f"{exc}\n--- argv: {list(argv)}\n--- output so far:\n{text}") from None
    finally:
        os.close(master)
    return out.decode("utf-8", "replace"), status


def _follow_script(
    master: int, proc: subprocess.Popen[bytes], out: bytearray, script: Script, deadline: float
) -> None:
    pos = 0
    eof = False
    for expect, send in script:
        if expect:
            pattern = re.compile(expect.encode() if isinstance(expect, str) else expect)
        while expect:
            m = pattern.search(out, pos)
            if m:
                pos = m.end()
                break
            if eof or time.monotonic() > deadline:
                why = "the command closed the terminal" if eof else "timeout"
                raise PtyTimeout(f"{why} while waiting for {expect!r}")
            data = _read(master, min(deadline, time.monotonic() + 0.2))
            if data is None:
                eof = True
            else:
                out += data
        os.write(master, send.encode() if isinstance(send, str) else send)


def _drain(master: int, proc: subprocess.Popen[bytes], out: bytearray, deadline: float) -> None:
    """Read until EOF, or until the command exited and the pty stayed quiet 0.5 s."""
    quiet_since: float | None = None
    while True:
        if time.monotonic() > deadline:
            raise PtyTimeout("timeout waiting for the command to exit")
        data = _read(master, min(deadline, time.monotonic() + 0.1))
        if data is None:
            return
        if data:
            out += data
            quiet_since = None
            continue
        if proc.poll() is not None:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 0.5:
                return


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Registry:
    host: str
    tls: bool
    storage: str
    ca_cert: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ref(self, name: str, tag: str = "latest") -> str:
        return f"{self.host}/{name}:{tag}"

    def get(self, path: str) -> tuple[int, bytes]:
        """GET url+path (with auth and CA if set) -> (status, body); no exceptions for 4xx."""
        req = urllib.request.Request(self.url + path)
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        ctx = ssl.create_default_context(cafile=self.ca_cert) if self.tls else None
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
