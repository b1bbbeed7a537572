"""Tests of the test harness itself: the host setup, users, venv, rootfs, CLI, pty.

When many tests fail at once, look here first: these say plainly what is wrong
with the test host (`sudo bash scripts/test.sh tests/test_harness.py`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
from helpers import (
    ROOTLESS_BIN,
    Registry,
    fuse_status,
    has_peer,
    overlay_status,
    require,
    userns_status,
)
from helpers.users import CLI, NOSUB_USER, SUB_USER, identity, make_cli, subid_ranges

VENV_PYTHON = os.path.join(os.path.dirname(ROOTLESS_BIN), "python")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switches users: run as root")


# ---------------------------------------------------------------- host


def test_users_exist() -> None:
    for name, user in (("sub", SUB_USER), ("nosub", NOSUB_USER)):
        ident = identity(name)
        assert ident.user == user and ident.uid != 0
        assert os.path.isdir(ident.home), f"{user} has no home {ident.home}"
        assert os.stat(ident.home).st_uid == ident.uid


def test_subid_ranges() -> None:
    for path in ("/etc/subuid", "/etc/subgid"):
        ranges = subid_ranges(SUB_USER, path)
        assert ranges, f"{SUB_USER} has no range in {path}"
        assert max(count for _, count in ranges) >= 65536
        assert subid_ranges(NOSUB_USER, path) == [], f"{NOSUB_USER} must have no range in {path}"
    assert identity("sub").has_subids
    assert not identity("nosub").has_subids
    assert identity("root").has_subids


def test_newuidmap_installed() -> None:
    for tool in ("newuidmap", "newgidmap"):
        path = f"/usr/bin/{tool}"
        assert os.path.exists(path), f"{tool} missing: apt-get install uidmap"
        st = os.stat(path)
        try:
            has_caps = bool(os.getxattr(path, "security.capability"))
        except OSError:
            has_caps = False
        assert st.st_mode & stat.S_ISUID or has_caps, f"{path} is neither setuid nor has caps"


def test_userns_works() -> None:
    ok, why = userns_status()
    require(ok, f"unprivileged user namespaces: {why}")


def test_overlay_probe() -> None:
    ok, why = overlay_status()
    require(ok, f"overlayfs in a user namespace: {why}")


def test_fuse_probe() -> None:
    ok, why = fuse_status()
    require(ok, f"fuse-overlayfs: {why}")


@pytest.mark.parametrize("tool", ["skopeo", "umoci", "podman", "crun", "runc", "bwrap", "ch-run"])
def test_peers_installed(tool: str) -> None:
    require(has_peer(tool), f"peer tool {tool} is not installed")


@needs_root
@pytest.mark.parametrize("name", ["sub", "nosub"])
def test_venv_usable_by_users(name: str) -> None:
    """The installed package and CLI must be readable and runnable by the test users."""
    ident = identity(name)
    assert os.path.exists(ROOTLESS_BIN), f"{ROOTLESS_BIN} missing: run scripts/setup-host.sh"
    setpriv = ["setpriv", f"--reuid={ident.uid}", f"--regid={ident.gid}", "--init-groups"]
    code = "import rootless, sys; print(rootless.__file__)"
    proc = subprocess.run(
        setpriv + [VENV_PYTHON, "-P", "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(os.path.dirname(os.path.dirname(ROOTLESS_BIN))), proc.stdout
    test_x = subprocess.run(setpriv + ["test", "-x", ROOTLESS_BIN], check=False, cwd="/")
    assert test_x.returncode == 0, f"{ROOTLESS_BIN} is not executable by {ident.user}"


# ---------------------------------------------------------------- markers


def test_require_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    require(True, "never")
    monkeypatch.setattr(helpers, "MUST_WORK", False)
    with pytest.raises(pytest.skip.Exception, match="no such feature"):
        require(False, "no such feature")
    monkeypatch.setattr(helpers, "MUST_WORK", True)
    with pytest.raises(pytest.fail.Exception, match="ROOTLESS_MUST_WORK=1 and no such feature"):
        require(False, "no such feature")


@pytest.mark.needs_userns
@pytest.mark.needs_peer("unshare", "setpriv")
def test_markers_pass_when_met() -> None:
    assert userns_status()[0]


# ---------------------------------------------------------------- rootfs


def test_busybox_rootfs(busybox_rootfs: str) -> None:
    r = busybox_rootfs
    assert not r.startswith("/tmp/pytest-of-")
    st = os.stat(os.path.join(r, "bin", "busybox"))
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755
    assert os.readlink(os.path.join(r, "bin", "sh")) == "busybox"
    assert os.path.realpath(os.path.join(r, "usr", "bin", "env")) == os.path.join(
        os.path.realpath(r), "bin", "busybox"
    )
    assert stat.S_IMODE(os.stat(os.path.join(r, "tmp")).st_mode) == 0o1777
    for d in ("proc", "sys", "dev", "etc", "root", "home/user", "var", "run"):
        st = os.stat(os.path.join(r, d))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755, d
    with open(os.path.join(r, "etc", "passwd")) as f:
        passwd = {line.split(":")[0]: line.strip().split(":") for line in f}
    assert passwd["root"][2] == "0"
    assert passwd["daemon"][2] == "1"
    assert passwd["nobody"][2:4] == ["65534", "65534"]
    assert passwd["user"][2:] == ["1000", "1000", "user", "/home/user", "/bin/sh"]
    with open(os.path.join(r, "etc", "group")) as f:
        groups = {line.split(":")[0]: int(line.split(":")[2]) for line in f}
    assert {"root": 0, "tty": 5, "users": 100, "user": 1000, "nogroup": 65534}.items() <= (
        groups.items()
    )
    for parent, dirs, files in os.walk(r):
        for name in dirs + files:
            assert os.lstat(os.path.join(parent, name)).st_uid == 0


@needs_root
def test_busybox_rootfs_runs(busybox_rootfs: str) -> None:
    """The rootfs really works as a root: chroot into it and run a few applets."""
    proc = subprocess.run(
        ["/usr/sbin/chroot", busybox_rootfs, "/bin/sh", "-c", "id -u; ls /bin | grep -c ."],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "0" and int(lines[1]) > 100


@needs_root
def test_busybox_rootfs_readable_by_nosub(busybox_rootfs: str) -> None:
    ident = identity("nosub")
    setpriv = ["setpriv", f"--reuid={ident.uid}", f"--regid={ident.gid}", "--init-groups"]
    passwd = os.path.join(busybox_rootfs, "etc", "passwd")
    proc = subprocess.run(setpriv + ["cat", passwd], check=False, capture_output=True, text=True)
    assert proc.returncode == 0 and "user:x:1000" in proc.stdout, proc.stderr


# ---------------------------------------------------------------- CLI object


def _tool_cli(name: str, tool: str) -> CLI:
    """A CLI object whose 'rootless' is another program, to test the identity switch."""
    return make_cli(name, bin=tool)


@needs_root
@pytest.mark.parametrize("name", ["root", "sub", "nosub"])
def test_cli_identity_and_env(name: str) -> None:
    c = _tool_cli(name, "/usr/bin/env")
    try:
        ident = identity(name)
        assert (c.name, c.uid, c.gid, c.user, c.home) == (
            name,
            ident.uid,
            ident.gid,
            ident.user,
            ident.home,
        )
        env = dict(line.split("=", 1) for line in c.run(check=True).stdout.splitlines())
        assert env["HOME"] == ident.home and env["USER"] == ident.user
        assert env["LOGNAME"] == ident.user and env["LANG"] == "C.UTF-8"
        assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert env["ROOTLESS_ROOT"] == c.store
        assert "XDG_RUNTIME_DIR" not in env
        env2 = c.run(env={"FOO": "bar", "LANG": None}, check=True).stdout
        assert "FOO=bar" in env2 and "LANG=" not in env2
        st = os.stat(c.store)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (ident.uid, 0o700)
    finally:
        c.cleanup()
    assert not os.path.exists(c.workdir)


@needs_root
@pytest.mark.parametrize("name", ["root", "sub", "nosub"])
def test_cli_runs_as_user(name: str) -> None:
    c = _tool_cli(name, "/usr/bin/id")
    try:
        ident = identity(name)
        out = c.run("-u", check=True).stdout.strip()
        assert out == str(ident.uid)
        assert c.run("-g").stdout.strip() == str(ident.gid)
        assert c.argv("-u")[-2:] == ["/usr/bin/id", "-u"]
        p = c.popen("-u", stdout=subprocess.PIPE, text=True)
        assert p.communicate()[0].strip() == str(ident.uid)
        # the cwd defaults to the per-test directory, which the user can enter
        pwd = make_cli(name, workdir=None, bin="/bin/pwd")
        assert pwd.run(check=True).stdout.strip() == pwd.workdir
        pwd.cleanup()
    finally:
        c.cleanup()


@needs_root
def test_cli_io_and_errors() -> None:
    cat = _tool_cli("sub", "/bin/cat")
    try:
        assert cat.run(input="hi\n").stdout == "hi\n"
        assert cat.run(input=b"\x00\xff").stdout == b"\x00\xff"
        with pytest.raises(subprocess.CalledProcessError, match="No such file"):
            cat.run("/nonexistent", check=True)
        assert cat.run("/nonexistent").returncode == 1
    finally:
        cat.cleanup()
    sleep = _tool_cli("sub", "/bin/sleep")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            sleep.run("30", timeout=0.5)
    finally:
        sleep.cleanup()


@needs_root
@pytest.mark.parametrize("name", ["root", "sub", "nosub"])
def test_cli_dirs(name: str) -> None:
    c = _tool_cli(name, "/bin/sh")
    try:
        vol = c.mkdir("vol")
        st = os.stat(vol)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (c.uid, 0o755)
        with pytest.raises(FileExistsError):
            c.mkdir("vol")
        rootfs = c.rootfs()
        assert os.stat(os.path.join(rootfs, "etc", "passwd")).st_uid == c.uid
        assert os.lstat(os.path.join(rootfs, "bin", "sh")).st_uid == c.uid
        # the user can write into both
        script = f"touch {vol}/f && touch {rootfs}/etc/new && echo ok"
        assert c.run("-c", script, check=True).stdout == "ok\n"
    finally:
        c.cleanup()


def test_run_in_pty(pty_run: Callable[..., tuple[str, int]]) -> None:
    script = "tty; stty size; printf 'name? '; read x; echo got:$x; exit 3"
    out, status = pty_run(
        ["/bin/sh", "-c", script], {"PATH": "/usr/bin:/bin"}, [(r"name\? ", "bob\n")], 10
    )
    assert status == 3
    assert "/dev/pts/" in out and "24 80" in out and "got:bob" in out


def test_run_in_pty_timeout(pty_run: Callable[..., tuple[str, int]]) -> None:
    with pytest.raises(AssertionError, match="never"):
        pty_run(["/bin/sh", "-c", "echo x; sleep 30"], None, [("never", "")], 1)


@needs_root
def test_cli_run_pty_owned_by_user() -> None:
    c = _tool_cli("nosub", "/bin/sh")
    try:
        out, status = c.run_pty("-c", 'test -O "$(tty)" && test -t 0 && echo mine:$TERM')
        assert status == 0, out
        assert "mine:xterm" in out
    finally:
        c.cleanup()


# ---------------------------------------------------------------- registry


def test_registry(registry: Registry) -> None:
    assert registry.host.startswith("127.0.0.1:") and not registry.tls
    status, body = registry.get("/v2/_catalog")
    assert status == 200 and b"repositories" in body
    assert registry.ref("a/b", "v1") == f"{registry.host}/a/b:v1"


def test_registry_auth(registry_auth: Registry) -> None:
    reg = registry_auth
    assert reg.tls and reg.url.startswith("https://") and reg.ca_cert
    assert os.stat(reg.ca_cert).st_mode & 0o004, "CA cert must be readable by the test users"
    assert reg.get("/v2/")[0] == 200
    anonymous = Registry(reg.host, reg.tls, reg.storage, reg.ca_cert)
    assert anonymous.get("/v2/")[0] == 401


@pytest.mark.needs_peer("skopeo")
def test_registry_accepts_push(registry: Registry, busybox_rootfs: str, tmp_path: Path) -> None:
    """A real client (skopeo) can push an image made from the busybox rootfs."""
    layout = tmp_path / "oci"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:bb"], check=True)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:bb", str(bundle)], check=True)
    shutil.rmtree(bundle / "rootfs")
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:bb", str(bundle)], check=True)
    dest = f"docker://{registry.ref('harness/busybox')}"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bb", dest],
        check=True,
        capture_output=True,
    )
    status, body = registry.get("/v2/harness/busybox/tags/list")
    assert status == 200 and b"latest" in body


@needs_root
def test_cleanup_kills_only_this_tests_processes() -> None:
    c = _tool_cli("sub", "/bin/sh")
    other = subprocess.Popen(c.prefix() + ["sleep", "30"], env={"PATH": "/usr/bin:/bin"})
    try:
        c.run("-c", "sleep 30 >/dev/null 2>&1 & exit 0", check=True)
        leftovers = c.leftover_pids()
        assert len(leftovers) == 1 and other.pid not in leftovers
        with pytest.warns(UserWarning, match="left processes running"):
            c.cleanup()
        assert not os.path.exists(f"/proc/{leftovers[0]}/cmdline") or c.leftover_pids() == []
        assert other.poll() is None, "a process of the same user but another test was killed"
    finally:
        other.kill()
        other.wait()


# ---------------------------------------------------------------- benchmark


@needs_root
def test_run_latency_benchmark_smoke() -> None:
    """benchmarks/run_latency.py runs (as rltest-sub) and measures rootless and ch-run."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run_latency.py"
    proc = subprocess.run(
        ["/usr/bin/python3", str(script), "--json", "--rounds", "2", "--warmup", "0",
         "--only", "rootless,ch-run"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout)
    stats = {c["name"]: c for c in result["contenders"]}
    assert result["meta"]["user"] == "rltest-sub"
    assert stats["python -I -c pass"]["stats"]["n"] == 2
    assert stats["rootless"]["stats"].get("n") == 2, stats["rootless"]["error"]
    assert "rootless_own_cost_ms" in result["derived"]
