"""The identities the CLI is tested as, and `CLI`, which runs rootless as one.

Three identities (made by scripts/setup-host.sh):
  root   uid 0, run directly
  sub    rltest-sub: has ranges in /etc/subuid and /etc/subgid
  nosub  rltest-nosub: has none (single-id mapping only)

Non-root commands run through `setpriv --reuid U --regid G --init-groups` with a
clean environment (HOME, USER, LOGNAME, PATH, LANG; no XDG_RUNTIME_DIR) plus
ROOTLESS_ROOT and ROOTLESS_RUNROOT pointing at a fresh store and runroot for each
test, so tests are isolated.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helpers import ROOTLESS_BIN, TEST_TMPDIR, Script, run_in_pty
from helpers.rootfs import make_rootfs

SUB_USER = "rltest-sub"
NOSUB_USER = "rltest-nosub"
IDENTITIES = ("root", "sub", "nosub")
USERS = {"root": "root", "sub": SUB_USER, "nosub": NOSUB_USER}
PATH = "/usr/local/bin:/usr/bin:/bin"


class HarnessError(RuntimeError):
    """The test host is not set up (run scripts/setup-host.sh)."""


@dataclass(frozen=True)
class Identity:
    name: str  # "root" / "sub" / "nosub"
    user: str
    uid: int
    gid: int
    home: str
    has_subids: bool  # can map more than one id (root: always)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def subid_ranges(user: str, path: str) -> list[tuple[int, int]]:
    """(start, count) ranges for `user` (by name or uid) in /etc/subuid or /etc/subgid."""
    try:
        uid = str(pwd.getpwnam(user).pw_uid)
    except KeyError:
        uid = ""
    ranges = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, uid):
                    ranges.append((int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return ranges


def identity(name: str) -> Identity:
    user = USERS[name]
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise HarnessError(
            f"test user {user!r} does not exist: run `sudo bash scripts/setup-host.sh`"
        ) from None
    has_subids = pw.pw_uid == 0 or bool(
        subid_ranges(user, "/etc/subuid") and subid_ranges(user, "/etc/subgid")
    )
    return Identity(name, user, pw.pw_uid, pw.pw_gid, pw.pw_dir, has_subids)


def base_env(ident: Identity) -> dict[str, str]:
    """The environment a login of this user would have (setpriv --reset-env like)."""
    return {
        "HOME": ident.home,
        "USER": ident.user,
        "LOGNAME": ident.user,
        "PATH": PATH,
        "LANG": "C.UTF-8",
        "SHELL": "/bin/sh",
    }


class CalledProcessError(subprocess.CalledProcessError):
    """CalledProcessError whose message shows the output (pytest prints str(exc))."""

    def __str__(self) -> str:
        def show(x: object) -> str:
            return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x or "")

        return f"{super().__str__()}\n--- stdout:\n{show(self.stdout)}\n--- stderr:\n{show(self.stderr)}"


class CLI:
    """Runs `rootless` as one identity with a private store for one test."""

    def __init__(self, ident: Identity, workdir: str, bin: str = ROOTLESS_BIN) -> None:
        self.ident = ident
        self.bin = bin
        self.workdir = workdir  # world-traversable per-test directory
        self.store = self._make_dir("store", 0o700)
        # per-test volatile state too, so `ps -a` in one test never sees another's containers
        self.runroot = self._make_dir("run", 0o700)
        # marks every process this test starts, so teardown can find leftovers
        self.test_id = os.path.basename(workdir)
        self.env: dict[str, str] = base_env(ident) | {
            "ROOTLESS_ROOT": self.store,
            "ROOTLESS_RUNROOT": self.runroot,
            "ROOTLESS_TEST_ID": self.test_id,
        }
        self._rootfs_count = 0

    # identity ------------------------------------------------------------
    name = property(lambda self: self.ident.name)
    user = property(lambda self: self.ident.user)
    uid = property(lambda self: self.ident.uid)
    gid = property(lambda self: self.ident.gid)
    home = property(lambda self: self.ident.home)
    has_subids = property(lambda self: self.ident.has_subids)

    def __repr__(self) -> str:
        return f"CLI({self.name}: {self.user} uid={self.uid} store={self.store})"

    # running -------------------------------------------------------------
    def prefix(self) -> list[str]:
        """argv prefix that switches to this identity (empty for root)."""
        if self.ident.is_root:
            return []
        i = self.ident
        return ["setpriv", f"--reuid={i.uid}", f"--regid={i.gid}", "--init-groups", "--"]

    def argv(self, *args: str) -> list[str]:
        """The full argv for `rootless <args>` as this identity (setpriv included)."""
        return self.prefix() + [self.bin, *args]

    def environ(self, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """self.env updated with `env` (a value of None removes the variable)."""
        merged = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def run(
        self,
        *args: str,
        input: str | bytes | None = None,
        timeout: float = 60,
        env: Mapping[str, str | None] | None = None,
        check: bool = False,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[Any]:
        """Run `rootless <args>`; stdout/stderr captured (text unless input is bytes).

        On timeout the whole process group is killed and TimeoutExpired raised.
        With check=True a non-zero exit raises CalledProcessError showing the output.
        """
        text = not isinstance(input, bytes)
        argv = self.argv(*args)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environ(env),
            cwd=cwd or self.workdir,
            text=text,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise CalledProcessError(result.returncode, argv, out, err)
        return result

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """subprocess.Popen of `rootless <args>` as this identity.

        Any Popen keyword may be given; `env` is merged into self.env (None
        removes a variable) and `cwd` defaults to the per-test directory.
        """
        kwargs["env"] = self.environ(kwargs.get("env"))
        kwargs.setdefault("cwd", self.workdir)
        return subprocess.Popen(self.argv(*args), **kwargs)

    def run_pty(
        self,
        *args: str,
        script: Script = (),
        timeout: float = 30,
        env: Mapping[str, str | None] | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> tuple[str, int]:
        """`rootless <args>` on a real pty owned by this user; see helpers.run_in_pty."""
        return run_in_pty(
            self.argv(*args),
            self.environ({"TERM": "xterm", **(env or {})}),
            script,
            timeout,
            cwd=self.workdir,
            owner=(self.uid, self.gid),
            rows=rows,
            cols=cols,
        )

    # files ---------------------------------------------------------------
    def _make_dir(self, name: str, mode: int) -> str:
        path = os.path.join(self.workdir, name)
        os.mkdir(path)  # fails if it exists: names are unique per test
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)
        return path

    def mkdir(self, name: str) -> str:
        """A fresh directory owned by this user, traversable by everyone (0755)."""
        return self._make_dir(name, 0o755)

    def rootfs(self) -> str:
        """A private copy of the busybox rootfs, owned by this user."""
        self._rootfs_count += 1
        dest = os.path.join(self.workdir, f"rootfs-{self._rootfs_count}")
        return make_rootfs(dest, self.uid, self.gid)

    # teardown ------------------------------------------------------------
    def leftover_pids(self) -> list[int]:
        """Processes this test started that still run: those carrying its
        ROOTLESS_TEST_ID in their environment, and their descendants.

        Scoped by marker, not by uid, so concurrent test runs as the same users
        (several developers on one machine) never kill each other's processes.
        """
        marker = f"ROOTLESS_TEST_ID={self.test_id}".encode()
        parents: dict[int, int] = {}
        marked: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if fields[0] in (b"Z", b"X"):  # exited, waiting to be reaped
                    continue
                parents[pid] = int(fields[1])
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        marked.append(pid)
            except (OSError, IndexError, ValueError):
                continue
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        found, todo = set(marked), list(marked)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return sorted(found)

    def cleanup(self) -> None:
        """Kill what the test left running (with a warning), remove its files."""
        pids = self.leftover_pids()
        if pids:
            cmds = [_cmdline(p) for p in pids]
            warnings.warn(f"{self.name}: test left processes running, killed: {cmds}", stacklevel=1)
            kill_all(pids)
        if os.environ.get("ROOTLESS_TEST_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


def kill_all(pids: list[int]) -> None:
    """SIGKILL each of `pids` (gone already is fine), then give the kernel a moment."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)


def proc_argv(pid: int) -> list[bytes]:
    """The command line of `pid`; [] when it is gone (a listed process may exit
    before it is read) or a zombie."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    if not data:
        return []
    argv = data.split(b"\0")
    return argv[:-1] if data.endswith(b"\0") else argv  # (a rewritten title may lack the NUL)


def _cmdline(pid: int) -> str:
    argv = proc_argv(pid)
    return b" ".join(argv).decode("utf-8", "replace") if argv else "?"


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def make_workdir(name: str) -> str:
    """A fresh world-traversable per-test directory under TEST_TMPDIR."""
    path = tempfile.mkdtemp(prefix=f"rl-test-{name}-", dir=TEST_TMPDIR)
    os.chmod(path, 0o755)
    return path


def make_cli(name: str, workdir: str | None = None, bin: str = ROOTLESS_BIN) -> CLI:
    """A CLI for identity `name` ("root"/"sub"/"nosub") with a fresh store."""
    return CLI(identity(name), workdir or make_workdir(name), bin)


def can_switch_users() -> bool:
    return os.geteuid() == 0


def identity_names(selected: Sequence[str] | None = None) -> tuple[str, ...]:
    """Identities to test: all, or those in $ROOTLESS_TEST_IDENTITIES (comma-separated)."""
    env = os.environ.get("ROOTLESS_TEST_IDENTITIES")
    names = tuple(x.strip() for x in env.split(",") if x.strip()) if env else IDENTITIES
    if selected is not None:
        names = tuple(n for n in names if n in selected)
    return names
