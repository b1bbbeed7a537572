"""Run plans: the native `rootless` command repeats a `run --rm` from the plan the
Python CLI wrote the first time (csrc/launcher/, rootless/runtime/plan.py).

Every test runs the installed command as root, as a user with subordinate ids and
as one without. A run from a plan must behave exactly as the Python CLI's run:
same ids, maps, mounts, environment, seccomp, stdin, exit status and signals; and
any change of what the plan was made from must send the command back to Python.
$ROOTLESS_PLAN_TRACE makes the launcher say on stderr what it did with the plan.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from helpers.checks import ok, one_error_line

pytestmark = pytest.mark.needs_userns

TRACE = {"ROOTLESS_PLAN_TRACE": "1"}
PROBE = ("id; cat /proc/self/uid_map /proc/self/gid_map; hostname; pwd; env | sort; "
         "grep -E 'NoNewPrivs|Seccomp:|CapEff' /proc/self/status; "
         "cut -d' ' -f5,6,9 /proc/self/mountinfo | sort; ls -la /dev /proc/sys | wc -l")


def traced(cli, *args, env=None, **kw):
    return cli.run(*args, env=TRACE | (env or {}), **kw)


def plan_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("rootless: plan ")]


def container_stderr(proc) -> str:
    return "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("rootless: plan "))


def plans(cli) -> list[str]:
    d = os.path.join(cli.runroot, "plans")
    return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []


def test_second_run_uses_the_plan_and_matches(cli, busybox_rootfs):
    args = ("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "--tmpfs", "/tmp", "-v",
            f"{cli.workdir}:/host:ro", "--rootfs", busybox_rootfs, "sh", "-c", PROBE)
    first = traced(cli, *args)
    second = traced(cli, *args)
    third = traced(cli, *args)
    assert first.returncode == second.returncode == third.returncode == 0, first.stderr + second.stderr
    assert "miss" in plan_lines(first)[0]
    assert plan_lines(second)[0].startswith("rootless: plan hit")
    assert plan_lines(third)[0].startswith("rootless: plan hit")
    assert first.stdout == second.stdout == third.stdout
    assert "FOO=bar" in second.stdout and "NoNewPrivs:\t1" in second.stdout
    assert container_stderr(first) == container_stderr(second) == ""
    assert len(plans(cli)) == 1
    st = os.stat(plans(cli)[0])
    assert st.st_uid == cli.uid and st.st_mode & 0o777 == 0o600


@pytest.mark.parametrize("script,code,init", [("exit 7", 7, False), ("sh -c 'kill -9 $$'; exit", 137, False),
                                              ("kill -9 $$", 137, True), ("true", 0, True)])
def test_exit_status_from_plan(cli, busybox_rootfs, script, code, init):
    args = ("run", "--rm", *(["--init"] if init else []), "--rootfs", busybox_rootfs, "sh", "-c", script)
    assert traced(cli, *args).returncode == code
    again = traced(cli, *args)
    assert plan_lines(again)[0].startswith("rootless: plan hit")
    assert again.returncode == code


def test_stdin_only_with_interactive(cli, busybox_rootfs):
    for _ in range(2):
        proc = traced(cli, "run", "--rm", "-i", "--rootfs", busybox_rootfs, "cat", input="hello\n")
        assert proc.returncode == 0 and proc.stdout == "hello\n"
    assert plan_lines(proc)[0].startswith("rootless: plan hit")
    for _ in range(2):
        proc = traced(cli, "run", "--rm", "--rootfs", busybox_rootfs, "cat", input="hello\n")
        assert proc.returncode == 0 and proc.stdout == ""
    assert plan_lines(proc)[0].startswith("rootless: plan hit")


def test_plans_follow_the_variables_the_run_read(cli, busybox_rootfs):
    args = ("run", "--rm", "-e", "COLOR", "--rootfs", busybox_rootfs, "sh", "-c", "echo $COLOR")
    assert ok(traced(cli, *args, env={"COLOR": "red"})).strip() == "red"
    proc = traced(cli, *args, env={"COLOR": "blue"})
    assert ok(proc).strip() == "blue" and "environment variable" in plan_lines(proc)[0]
    # a variable the run never read (here: a job's id) does not matter
    hit = traced(cli, *args, env={"COLOR": "blue", "SLURM_JOB_ID": "42"})
    assert ok(hit).strip() == "blue" and plan_lines(hit)[0].startswith("rootless: plan hit")
    other = cli.mkdir("elsewhere")
    moved = traced(cli, *args, env={"COLOR": "blue"}, cwd=other)
    assert ok(moved).strip() == "blue" and "miss" in plan_lines(moved)[0]
    # --env-host reads the whole environment: any change retires the plan
    host = ("run", "--rm", "--env-host", "--rootfs", busybox_rootfs, "sh", "-c", "echo $JOB")
    assert ok(traced(cli, *host, env={"JOB": "1"})).strip() == "1"
    assert plan_lines(traced(cli, *host, env={"JOB": "1"}))[0].startswith("rootless: plan hit")
    proc = traced(cli, *host, env={"JOB": "2"})
    assert ok(proc).strip() == "2" and "environment changed" in plan_lines(proc)[0]


def test_changed_passwd_retires_the_plan(cli):
    rootfs = cli.rootfs()
    args = ("run", "--rm", "-u", "alice", "--rootfs", rootfs, "id", "-u")
    passwd = os.path.join(rootfs, "etc", "passwd")
    with open(passwd, "a") as f:
        f.write("alice:x:1234:1234::/home/alice:/bin/sh\n")
    proc = traced(cli, *args)
    if cli.name == "nosub":
        assert proc.returncode == 0 and proc.stdout.strip() == "1234"
    else:
        assert ok(proc).strip() == "1234"
    assert plan_lines(traced(cli, *args))[0].startswith("rootless: plan hit")
    time.sleep(0.01)
    with open(passwd) as f:
        text = f.read().replace("alice:x:1234:1234", "alice:x:4321:4321")
    with open(passwd, "w") as f:
        f.write(text)
    proc = traced(cli, *args)
    assert ok(proc).strip() == "4321"
    assert "stale" in plan_lines(proc)[0] and "changed" in plan_lines(proc)[0]
    assert plan_lines(traced(cli, *args))[0].startswith("rootless: plan hit")


def test_missing_command_falls_back_to_a_clear_error(cli):
    rootfs = cli.rootfs()
    tool = os.path.join(rootfs, "bin", "tool")
    with open(tool, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(tool, 0o755)
    args = ("run", "--rm", "--rootfs", rootfs, "/bin/tool", "true")
    ok(traced(cli, *args))
    os.unlink(tool)
    proc = traced(cli, *args)
    assert proc.returncode == 127
    assert plan_lines(proc)[0].startswith("rootless: plan hit")
    assert any("plan failed" in line for line in plan_lines(proc))
    assert "Traceback" not in proc.stderr
    line = one_error_line(proc.__class__(proc.args, proc.returncode, proc.stdout, container_stderr(proc)),
                          code=127)
    assert "/bin/tool" in line
    assert plans(cli) == []  # the failed plan is gone; a failed run writes none


def test_unsafe_or_broken_plans_are_ignored(cli, busybox_rootfs):
    args = ("run", "--rm", "--rootfs", busybox_rootfs, "echo", "ok")
    ok(traced(cli, *args))
    [path] = plans(cli)
    os.chmod(path, 0o666)
    proc = traced(cli, *args)
    assert ok(proc).strip() == "ok" and "ignored" in plan_lines(proc)[0]
    assert os.stat(path).st_mode & 0o777 == 0o600  # rewritten by the Python CLI
    for garbage in (b"", b"RLPLAN1\n", b"RLPLAN1\nK\xff\xff\xff\xff", os.urandom(300)):
        with open(path, "wb") as f:
            f.write(garbage)
        proc = traced(cli, *args)
        assert ok(proc).strip() == "ok" and "hit" not in plan_lines(proc)[0]
    ok(traced(cli, *args))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data.replace(b"rootless-plan ", b"rootless-plaX "))
    proc = traced(cli, *args)
    assert ok(proc).strip() == "ok" and "another command line" in plan_lines(proc)[0]


def test_one_plan_serves_any_command_after_the_same_options(cli, busybox_rootfs):
    for i in range(3):
        proc = traced(cli, "run", "--rm", "-e", "A=1", "--rootfs", busybox_rootfs, "echo", f"run {i}", '"q\\')
        assert ok(proc) == f'run {i} "q\\\n'
        assert ("miss" if i == 0 else "plan hit") in plan_lines(proc)[0]
    assert len(plans(cli)) == 1
    # after the options of --rootfs DIR, a word with a dash is an option, never the command
    proc = traced(cli, "run", "--rm", "-e", "A=1", "--rootfs", busybox_rootfs, "-e", "B=2", "sh", "-c", "echo $A$B")
    assert ok(proc).strip() == "12" and "dash" in plan_lines(proc)[0]
    # a run that uses the image's (here: no) command has no shape plan; the exact one is used
    proc = traced(cli, "run", "--rm", "--entrypoint", "echo", "--rootfs", busybox_rootfs)
    assert ok(proc) == "\n"
    assert plan_lines(traced(cli, "run", "--rm", "--entrypoint", "echo", "--rootfs", busybox_rootfs))[0].startswith(
        "rootless: plan hit")


def test_cache_can_be_turned_off(cli, busybox_rootfs):
    args = ("run", "--rm", "--rootfs", busybox_rootfs, "true")
    for _ in range(2):
        proc = traced(cli, *args, env={"ROOTLESS_PLAN_CACHE": "0"})
        assert proc.returncode == 0 and plan_lines(proc) == []
    assert plans(cli) == []


@pytest.mark.parametrize("extra", [["--fakeroot"], ["--log-level", "debug"], ["--timings"]])
def test_runs_that_need_python_are_never_planned(cli, busybox_rootfs, extra):
    if extra == ["--log-level", "debug"]:
        args = ["--log-level", "debug", "run", "--rm", "--rootfs", busybox_rootfs, "true"]
    else:
        args = ["run", "--rm", *extra, "--rootfs", busybox_rootfs, "true"]
    for _ in range(2):
        proc = traced(cli, *args)
        assert proc.returncode == 0, proc.stderr
        assert "miss" in plan_lines(proc)[0]
    assert plans(cli) == []


def test_tty_runs_are_never_planned(cli, busybox_rootfs):
    for _ in range(2):
        out, code = cli.run_pty("run", "--rm", "-t", "--rootfs", busybox_rootfs, "tty", env=TRACE)
        assert code == 0 and "/dev/pts/" in out
        assert "rootless: plan miss" in out
    assert plans(cli) == []


def test_signals_reach_the_container(cli, busybox_rootfs):
    args = ("run", "--rm", "--rootfs", busybox_rootfs, "sh", "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done")
    for attempt in range(2):
        proc = cli.popen(*args, env=TRACE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 3, err
        assert "got-term" in out
    assert "plan hit" in err


# ---------------------------------------------------------------- run --rm IMAGE


def store_is_clean(cli, timeout=10.0) -> list[str]:
    """What is left of containers once the deleting child is done (polls)."""
    deadline = time.monotonic() + timeout
    while True:
        ctrs = os.path.join(cli.store, "containers")
        left = [n for n in os.listdir(ctrs) if n != ".names"] if os.path.isdir(ctrs) else []
        names = os.path.join(ctrs, ".names")
        left += [f".names/{n}" for n in os.listdir(names)] if os.path.isdir(names) else []
        run = os.path.join(cli.runroot, "containers")
        left += [f"run/{n}" for n in os.listdir(run)] if os.path.isdir(run) else []
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture()
def pulled(cli, busybox_image):
    ok(cli.run("pull", "-q", busybox_image))
    ok(cli.run("tag", busybox_image, "plan:1"))
    return "plan:1"


def test_image_run_from_plan(cli, pulled):
    args = ("run", "--rm", "-e", "A=1", pulled, "sh", "-c", PROBE + "; cat /etc/motd; id -un")
    first, second = traced(cli, *args), traced(cli, *args)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert plan_lines(second)[0].startswith("rootless: plan hit")
    assert first.stdout == second.stdout and "layer two" in second.stdout
    assert container_stderr(second) == ""
    assert store_is_clean(cli) == []


def test_image_plan_serves_any_command(cli, pulled):
    for i, word in enumerate(["one", 'two "quoted" \\ back', "three"]):
        proc = traced(cli, "run", "--rm", pulled, "echo", word)
        assert ok(proc) == word + "\n"
        assert ("miss" if i == 0 else "plan hit") in plan_lines(proc)[0]
    proc = traced(cli, "run", "--rm", pulled, "echo", "d\u00e9j\u00e0")  # not ASCII: the Python CLI writes config.json
    assert ok(proc) == "d\u00e9j\u00e0\n" and "not printable ASCII" in plan_lines(proc)[0]
    hold = cli.mkdir("hold2")
    open(os.path.join(hold, "wait"), "w").close()
    os.chmod(os.path.join(hold, "wait"), 0o666)
    args = ("run", "--rm", "-v", f"{hold}:/hold", pulled, "sh", "-c")
    ok(traced(cli, *args, "true"))
    proc = cli.popen(*args, 'while [ -e /hold/wait ]; do sleep 0.05; done # "x" \\', env=TRACE,
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     start_new_session=True)
    deadline = time.monotonic() + 20
    while not ok(cli.run("ps", "-q")) and time.monotonic() < deadline:
        time.sleep(0.05)
    command = ok(cli.run("inspect", "--format", "{{json .Config.Cmd}}", ok(cli.run("ps", "-q")).strip()))
    os.unlink(os.path.join(hold, "wait"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "plan hit" in err, err
    assert json.loads(command)[-1] == 'while [ -e /hold/wait ]; do sleep 0.05; done # "x" \\'
    assert store_is_clean(cli) == []


def test_planned_container_is_listed_reachable_and_removed(cli, pulled):
    hold = cli.mkdir("hold")
    args = ("run", "--rm", "--name", "planned", "-v", f"{hold}:/hold", pulled, "sh", "-c",
            "while [ -e /hold/wait ]; do sleep 0.05; done; echo done")
    ok(traced(cli, *args))
    open(os.path.join(hold, "wait"), "w").close()
    os.chmod(os.path.join(hold, "wait"), 0o666)
    proc = cli.popen(*args, env=TRACE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while "planned" not in ok(cli.run("ps", "--format", "{{.Names}}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    row = ok(cli.run("ps", "--format", "{{.Names}}|{{.Command}}|{{.Status}}")).strip()
    assert row.startswith('planned|"sh -c') and "|Up" in row, row
    assert ok(cli.run("exec", "planned", "cat", "/etc/motd")) == "layer two\n"
    clash = cli.run("run", "--rm", "--name", "planned", pulled, "true")
    assert clash.returncode == 125 and "already in use" in clash.stderr
    os.unlink(os.path.join(hold, "wait"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == "done\n", err
    assert "plan hit" in err
    assert store_is_clean(cli) == []
    assert ok(cli.run("ps", "-aq")) == ""


def test_planned_container_removed_from_elsewhere(cli, pulled):
    args = ("run", "--rm", "--name", "victim", pulled, "sh", "-c", "sleep ${T:-0}")
    ok(traced(cli, *args))
    ok(traced(cli, *args))  # a hit, for the same key below (T is never set)
    proc = cli.popen("run", "--rm", "--name", "victim", pulled, "sh", "-c", "sleep 60",
                     env=TRACE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while "victim" not in ok(cli.run("ps", "--format", "{{.Names}}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    ok(cli.run("rm", "-f", "victim"))
    proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert store_is_clean(cli) == []


def test_files_of_any_owner_are_deleted(cli, pulled):
    args = ("run", "--rm", pulled, "sh", "-c",
            "mkdir -p /x/y && echo a > /x/y/f && (chown -R 100:100 /x 2>/dev/null; chmod 700 /x/y /x)")
    for _ in range(3):
        proc = traced(cli, *args)
        assert proc.returncode == 0, proc.stderr
        assert store_is_clean(cli) == []
    assert plan_lines(proc)[0].startswith("rootless: plan hit")


def test_plan_follows_tags_and_rmi(cli, pulled):
    args = ("run", "--rm", "--pull", "never", pulled, "cat", "/etc/motd")
    assert ok(traced(cli, *args)) == "layer two\n"
    assert plan_lines(traced(cli, *args))[0].startswith("rootless: plan hit")
    ok(cli.run("run", "--name", "edit", pulled, "sh", "-c", "echo changed > /etc/motd"))
    ok(cli.run("commit", "edit", pulled))
    ok(cli.run("rm", "edit"))
    proc = traced(cli, *args)
    assert ok(proc) == "changed\n" and "stale" in plan_lines(proc)[0]
    assert plan_lines(traced(cli, *args))[0].startswith("rootless: plan hit")
    ok(cli.run("rmi", pulled))
    proc = traced(cli, *args)
    assert "stale" in plan_lines(proc)[0]
    one_error_line(proc.__class__(proc.args, proc.returncode, proc.stdout, container_stderr(proc)))
    assert store_is_clean(cli) == []


def test_pull_always_is_never_planned(cli, busybox_image):
    for _ in range(2):
        proc = traced(cli, "run", "--rm", "--pull", "always", busybox_image, "true")
        assert proc.returncode == 0, proc.stderr
        assert "miss" in plan_lines(proc)[0]
    assert plans(cli) == []


def test_a_run_that_pulled_writes_a_plan_for_any_environment(cli, busybox_image):
    # the pull reads the environment (proxies); a planned run never pulls, so the
    # plan must not depend on it: a job's next task (other SLURM_* values) uses it
    args = ("run", "--rm", busybox_image, "true")
    first = traced(cli, *args, env={"SLURM_PROCID": "0"})
    assert first.returncode == 0 and "Unable to find image" in first.stderr
    hit = traced(cli, *args, env={"SLURM_PROCID": "1"})
    assert hit.returncode == 0 and plan_lines(hit)[0].startswith("rootless: plan hit"), hit.stderr
    assert store_is_clean(cli) == []  # and the deleting child is done before teardown
