"""Persistent containers from images: the docker lifecycle, as every identity.

The image is built by the tests (busybox-static rootfs + a second layer) and
served by a real docker-registry; containers run on a kernel overlayfs in the
user namespace, under rootless-monitor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
from helpers.checks import ok

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="session")
def image(busybox_image):
    return busybox_image


def test_run_image_pulls_and_runs(cli, image):
    proc = cli.run("run", "--rm", image, "cat", "/etc/motd")
    assert ok(proc) == "layer two\n"
    assert "Unable to find image" in proc.stderr
    assert ok(cli.run("ps", "-aq")) == ""  # --rm removed it


def test_run_image_default_cmd_and_exit_code(cli, image):
    proc = cli.run("run", "-i", image, input="echo hi; exit 7\n")
    assert proc.returncode == 7 and proc.stdout == "hi\n"
    out = ok(cli.run("ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Image}}"))
    name, status, img = out.strip().split("|")
    assert re.fullmatch(r"[a-z]+_[a-z]+\d*", name)
    assert status.startswith("Exited (7)")
    assert img.endswith("test/ctr-busybox:latest")


def test_ps_columns_and_filters(cli, image):
    ok(cli.run("run", "--name", "one", image, "true"))
    cid = ok(cli.run("run", "-d", "--name", "two", image, "sleep", "30")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    out = ok(cli.run("ps"))
    header = out.splitlines()[0]
    for col in ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"):
        assert col in header
    assert "two" in out and "one" not in out and "Up " in out
    assert "one" in ok(cli.run("ps", "-a"))
    assert ok(cli.run("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}")).split() == ["one"]
    assert ok(cli.run("ps", "-q", "--no-trunc")).strip() == cid
    data = json.loads(ok(cli.run("ps", "-a", "--format", "json")))
    assert {d["Names"] for d in data} == {"one", "two"}
    ok(cli.run("rm", "-f", "two"))


def test_names_are_unique(cli, image):
    ok(cli.run("create", "--name", "dup", image, "true"))
    proc = cli.run("create", "--name", "dup", image, "true")
    assert proc.returncode == 125 and "already in use" in proc.stderr and proc.stderr.count("\n") == 1


def test_detached_logs_stop_start_restart_keep_changes(cli, image):
    script = "cat /state 2>/dev/null; echo run >> /state; echo started; sleep 60"
    ok(cli.run("run", "-d", "--name", "svc", image, "sh", "-c", script))
    _wait_log(cli, "svc", "started")
    assert ok(cli.run("logs", "svc")) == "started\n"
    t0 = time.monotonic()
    ok(cli.run("stop", "-t", "1", "svc"))  # sh as PID 1 ignores SIGTERM: killed after 1 s
    assert time.monotonic() - t0 < 8
    assert "Exited (137)" in ok(cli.run("ps", "-a", "--format", "{{.Status}}"))
    ok(cli.run("start", "svc"))
    _wait_log(cli, "svc", "run\nstarted", count=2)
    ok(cli.run("restart", "-t", "0", "svc"))
    _wait_log(cli, "svc", "run\nrun\nstarted", count=3)
    out = ok(cli.run("logs", "--tail", "3", "svc"))
    assert out == "run\nrun\nstarted\n"
    stamped = ok(cli.run("logs", "-t", "--tail", "1", "svc"))
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z started\n", stamped)
    ok(cli.run("kill", "svc"))
    assert ok(cli.run("wait", "svc")).strip() == "137"


def _wait_log(cli, name, text, count=1, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cli.run("logs", name).stdout
        if out.count("started") >= count and text in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"log of {name} never showed {text!r}: {out!r}")


def test_logs_follow_and_stderr(cli, image):
    ok(cli.run("run", "-d", "--name", "f", image, "sh", "-c", "echo out; echo err >&2; sleep 0.5; echo end"))
    proc = cli.run("logs", "-f", "f", timeout=30)
    assert proc.stdout == "out\nend\n" and proc.stderr == "err\n"


def test_rm_refuses_running_and_run_rm(cli, image):
    ok(cli.run("run", "-d", "--name", "busy", image, "sleep", "60"))
    proc = cli.run("rm", "busy")
    assert proc.returncode == 125 and "running" in proc.stderr
    ok(cli.run("rm", "-f", "busy"))
    assert ok(cli.run("ps", "-aq")) == ""
    ok(cli.run("run", "--rm", "-d", "--name", "gone", image, "true"))
    deadline = time.monotonic() + 20
    while ok(cli.run("ps", "-aq")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ok(cli.run("ps", "-aq")) == ""


def test_rm_removes_files(cli, image):
    ok(cli.run("run", image, "sh", "-c", "mkdir -p /a/b && echo x > /a/b/f && chmod 700 /a"))
    cid = ok(cli.run("ps", "-aq", "--no-trunc")).strip()
    cdir = os.path.join(cli.store, "containers", cid)
    assert os.path.isdir(os.path.join(cdir, "upper", "a"))
    ok(cli.run("rm", cid[:12]))
    assert not os.path.exists(cdir)


def test_inspect(cli, image):
    ok(cli.run("run", "--name", "ins", "-e", "X=1", image, "true"))
    data = json.loads(ok(cli.run("inspect", "ins")))[0]
    assert data["Name"] == "/ins"
    assert data["State"]["Status"] == "exited" and data["State"]["ExitCode"] == 0
    assert data["Config"]["Cmd"] == ["true"] and "X=1" in data["Config"]["Env"]
    g = data["GraphDriver"]["Data"]
    assert g["UpperDir"].endswith("/upper") and len(g["LowerDir"].split(":")) == 2
    assert ok(cli.run("inspect", "-f", "{{.State.Status}}", "ins")).strip() == "exited"
    ok(cli.run("rename", "ins", "renamed"))
    assert ok(cli.run("inspect", "-f", "{{.Name}}", "renamed")).strip() == "/renamed"
    proc = cli.run("inspect", "nope-nothing")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1


def test_killed_monitor_never_shows_up(cli, image):
    ok(cli.run("run", "-d", "--name", "m", image, "sleep", "60"))
    state = json.loads(open(os.path.join(cli.runroot, "containers",
                                         _id(cli, "m"), "state.json")).read())
    os.kill(state["monitor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "Up" in ok(cli.run("ps", "-a", "--format", "{{.Status}}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ok(cli.run("ps", "-a", "--format", "{{.Status}}")).startswith("Exited")


def test_reboot_simulated_by_clearing_runroot(cli, image):
    import shutil

    ok(cli.run("run", "-d", "--name", "r", image, "sleep", "60"))
    cid = _id(cli, "r")
    st = json.loads(open(os.path.join(cli.runroot, "containers", cid, "state.json")).read())
    os.kill(st["monitor_pid"], signal.SIGKILL)
    os.kill(st["pid"], signal.SIGKILL) if _alive(st["pid"]) else None
    shutil.rmtree(os.path.join(cli.runroot, "containers"))
    status = ok(cli.run("ps", "-a", "--format", "{{.Status}}")).strip()
    assert status.startswith("Exited") or status == "Created"
    ok(cli.run("start", "r"))  # usable again after the "reboot"
    assert "Up" in ok(cli.run("ps", "--format", "{{.Status}}"))
    ok(cli.run("rm", "-f", "r"))


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _id(cli, name):
    return ok(cli.run("inspect", "-f", "{{.Id}}", name)).strip()


def test_two_clis_racing_on_one_container(cli, image):
    ok(cli.run("create", "--name", "race", image, "sleep", "30"))
    procs = [cli.popen("start", "race", stdout=-1, stderr=-1, text=True) for _ in range(2)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    assert sorted(r[2] for r in results) in ([0, 0], [0, 125])
    out = ok(cli.run("ps", "--format", "{{.Names}}"))
    assert out.split() == ["race"]
    pids = ok(cli.run("inspect", "-f", "{{.State.Pid}}", "race")).split()
    assert len(pids) == 1 and int(pids[0]) > 0
    ok(cli.run("rm", "-f", "race"))


def test_start_ai_and_attach(cli, image, pty_run):
    out, status = pty_run(cli.argv("run", "-it", "--name", "shell", image, "sh"), cli.environ(),
                          [(r"# ", "echo hello > /greeting\r"), (r"# ", "exit 4\r")],
                          owner=(cli.uid, cli.gid))
    assert status == 4, out
    assert ok(cli.run("ps", "-a", "--format", "{{.Status}}")).startswith("Exited (4)")
    out, status = pty_run(cli.argv("start", "-ai", "shell"), cli.environ(),
                          [(r"# ", "cat /greeting\r"), (r"hello", "exit 0\r")], owner=(cli.uid, cli.gid))
    assert status == 0 and "hello" in out, out
    ok(cli.run("start", "shell"))
    out, status = pty_run(cli.argv("attach", "shell"), cli.environ(),
                          [(None, "\r"), (r"# ", "echo attached\r"), (r"attached", "\x10\x11")],
                          owner=(cli.uid, cli.gid))
    assert status == 0, out
    assert "Up" in ok(cli.run("ps", "--format", "{{.Status}}"))  # detaching left it running
    ok(cli.run("rm", "-f", "shell"))


def test_bad_input_is_one_line(cli, image):
    for args in (["run", "UPPER/case"], ["start", "nosuch"], ["stop", "nosuch"], ["logs", "nosuch"],
                 ["run", "--pull=never", "not/pulled:x", "true"], ["kill", "-s", "BOGUS", "x"]):
        proc = cli.run(*args)
        assert proc.returncode == 125, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_container_prune(cli, image):
    ok(cli.run("run", image, "true"))
    ok(cli.run("run", "-d", image, "sleep", "30"))
    out = ok(cli.run("container", "prune", "-f"))
    assert "Total removed containers: 1" in out
    assert len(ok(cli.run("ps", "-aq")).split()) == 1
    ok(cli.run("rm", "-f", ok(cli.run("ps", "-q")).strip()))


def test_exec(cli, image, pty_run):
    ok(cli.run("run", "-d", "--name", "ex", "-e", "FROM_RUN=1", image, "sleep", "60"))
    out = ok(cli.run("exec", "ex", "sh", "-c", "echo $$ $FROM_RUN; ps -o pid,comm | grep -c sleep"))
    pid, env, sleeps = out.split()
    assert pid != "1" and env == "1" and sleeps == "1"  # inside the container's pid namespace
    proc = cli.run("exec", "-u", "nobody", "-w", "/tmp", "-e", "X=2", "ex", "sh", "-c", "id -u; pwd; echo $X")
    if cli.name == "nosub":  # one id is mapped: the container's own (documented)
        assert proc.returncode == 125 and "not mapped" in proc.stderr and proc.stderr.count("\n") == 1
    else:
        assert ok(proc).split() == ["65534", "/tmp", "2"]
    assert ok(cli.run("exec", "-w", "/tmp", "-e", "X=2", "ex", "sh", "-c", "pwd; echo $X")).split() == ["/tmp", "2"]
    assert cli.run("exec", "ex", "sh", "-c", "exit 9").returncode == 9
    assert cli.run("exec", "ex", "no-such-cmd").returncode == 127
    assert ok(cli.run("exec", "-i", "ex", "cat", input="piped\n")) == "piped\n"
    out, status = pty_run(cli.argv("exec", "-it", "ex", "sh"), cli.environ(),
                          [(r"# ", "tty; exit 3\r")], owner=(cli.uid, cli.gid))
    assert status == 3 and "/dev/pts/" in out, out
    ok(cli.run("stop", "-t", "0", "ex"))
    proc = cli.run("exec", "ex", "true")
    assert proc.returncode == 125 and "not running" in proc.stderr


def test_init_container_exec_top_cp(cli, image, tmp_path_factory):
    """With --init, PID 1 is not dumpable (it holds the runtime's memory): exec, top,
    stats and cp reach the container through its command instead."""
    ok(cli.run("run", "-d", "--init", "--name", "ini", image, "sh", "-c", "echo hi > /tmp/f; sleep 60"))
    time.sleep(0.3)
    out = ok(cli.run("exec", "ini", "sh", "-c", "echo $$; cat /tmp/f; ps -o pid,comm | grep -c sleep"))
    pid, content, sleeps = out.split()
    assert pid not in ("1", "2") and content == "hi" and sleeps == "1"
    assert "sleep 60" in ok(cli.run("top", "ini"))
    rows = json.loads(ok(cli.run("stats", "--no-stream", "--format", "json", "ini")))
    assert int(rows[0]["PIDs"]) >= 2
    dest = cli.mkdir("cp-out")
    ok(cli.run("cp", "ini:/tmp/f", dest))
    with open(os.path.join(dest, "f")) as f:
        assert f.read() == "hi\n"
    ok(cli.run("rm", "-f", "ini"))


def test_top_and_stats(cli, image):
    ok(cli.run("run", "-d", "--name", "t", image, "sh", "-c", "sleep 60 & sleep 61"))
    time.sleep(0.3)
    out = ok(cli.run("top", "t"))
    assert "PID" in out.splitlines()[0] and "sleep 60" in out and "sleep 61" in out
    rows = json.loads(ok(cli.run("stats", "--no-stream", "--format", "json", "t")))
    assert rows[0]["Name"] == "t" and int(rows[0]["PIDs"]) >= 2
    assert rows[0]["MemUsage"].split(" / ")[0] != "0B"
    table = ok(cli.run("stats", "--no-stream"))
    assert "CPU %" in table and "MEM USAGE / LIMIT" in table
    ok(cli.run("rm", "-f", "t"))


@pytest.mark.parametrize("driver", ["fuse-overlayfs", "vfs"])
def test_fallback_storage_drivers(cli, image, driver):
    if driver == "fuse-overlayfs":
        from helpers import has_fuse, require

        require(has_fuse(), "fuse-overlayfs and /dev/fuse are needed")
    base = ("--storage-driver", driver)
    out = ok(cli.run(*base, "run", "--name", "d", image, "sh", "-c",
                     "cat /etc/motd; echo kept > /state; rm /etc/motd; ls /etc/motd 2>&1 || true"))
    assert out.startswith("layer two\n") and "No such file" in out
    assert ok(cli.run("inspect", "-f", "{{.Driver}}", "d")).strip() == driver
    # the same container keeps its changes (and its deletions) across starts
    c2 = ok(cli.run(*base, "create", "--name", "d2", image, "sh", "-c",
                    "cat /state 2>/dev/null || echo first; echo again > /state"))
    assert c2.strip()
    assert ok(cli.run("start", "-a", "d2")) == "first\n"
    assert ok(cli.run("start", "-a", "d2")) == "again\n"
    ok(cli.run("rm", "d2"))
    proc = cli.run(*base, "run", "--rm", image, "cat", "/etc/motd")
    assert ok(proc) == "layer two\n"  # a fresh container sees the image, untouched
    if driver == "fuse-overlayfs":  # same upper-dir format: diff works
        changes = ok(cli.run("diff", "d")).splitlines()
        assert "A /state" in changes and "D /etc/motd" in changes
    else:
        proc = cli.run("diff", "d")
        assert proc.returncode == 125 and "vfs" in proc.stderr
    ok(cli.run("rm", "d"))


def test_info_shows_storage_driver(cli):
    info = json.loads(ok(cli.run("info", "--format", "json")))
    assert info["storage_driver"] == "overlay"
    assert "Storage driver for new containers: overlay" in ok(cli.run("info"))


def test_user_names_resolve_through_the_image_layers(cli, image):
    # the overlay is mounted only inside the container: names come from the layers
    out = ok(cli.run("run", "--rm", "-u", "daemon", image, "sh", "-c", "id -u; echo $HOME"))
    assert out.split() == ["1", "/usr/sbin"]
    proc = cli.run("run", "--rm", "-u", "nosuchuser", image, "true")
    assert proc.returncode == 125 and "unable to find user nosuchuser" in proc.stderr


def test_image_volumes_are_anonymous_volumes(cli, busybox_rootfs):
    import io
    import tarfile

    tarball = os.path.join(cli.workdir, "rootfs-with-data.tar")
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
        info = tarfile.TarInfo("data/seed")
        info.size, info.uid, info.gid, info.mode = 5, 0, 0, 0o644
        tar.addfile(info, io.BytesIO(b"seed\n"))
    os.chmod(tarball, 0o644)
    ok(cli.run("import", "--change", "VOLUME /data", tarball, "vol/test"))
    ok(cli.run("run", "--name", "v", "vol/test", "sh", "-c", "cat /data/seed; echo more >> /data/seed"))
    mounts = json.loads(ok(cli.run("inspect", "v")))[0]["Mounts"]
    assert any(m["Destination"] == "/data" for m in mounts)
    # the data lives in the volume, not in the container's layer, and survives restarts
    assert "/data/seed" not in ok(cli.run("diff", "v"))
    ok(cli.run("start", "v"))
    ok(cli.run("wait", "v"))
    assert ok(cli.run("logs", "v")) == "seed\nseed\nmore\n"
    # a fresh container gets a fresh copy of the image's content
    assert ok(cli.run("run", "--rm", "vol/test", "cat", "/data/seed")) == "seed\n"
    ok(cli.run("rm", "v"))


def test_run_rm_foreground_is_listed_exec_able_and_removed(cli, image):
    proc = cli.popen("run", "--rm", "--name", "fg", image, "sh", "-c", "echo up; sleep 30",
                     stdout=-1, stderr=-1, text=True)
    try:
        assert proc.stdout.readline() == "up\n"
        assert "fg" in ok(cli.run("ps", "--format", "{{.Names}}"))
        assert ok(cli.run("exec", "fg", "echo", "inside")) == "inside\n"
        ok(cli.run("kill", "fg"))  # sh as PID 1 ignores SIGTERM: kill it, like docker
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 137
    assert ok(cli.run("ps", "-aq")) == ""  # removed on exit, also after a signal
