"""`rootless run --rootfs`: namespaces, id mapping, mounts, options, streams, exit codes.

Every test runs the installed CLI as root, as a user with subordinate ids ("sub")
and as a user without ("nosub"), against a busybox rootfs built from Debian's
busybox-static. Nothing here is mocked: real namespaces, mounts and ptys.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from helpers.checks import ok, one_error_line

pytestmark = pytest.mark.needs_userns

R = "--rootfs"


def sh(cli, rootfs, script, *opts, **kw):
    return cli.run("run", "--rm", *opts, R, rootfs, "sh", "-c", script, **kw)


# ---------------------------------------------------------------- identity


def test_root_inside_and_id_maps(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"))
    lines = out.split("\n")
    assert lines[0:2] == ["0", "0"]
    maps = [line.split() for line in lines[2:] if line.strip()]
    if cli.name == "root":
        assert maps == [["0", "0", "4294967295"]] * 2
    elif cli.name == "sub":
        assert ["0", str(cli.uid), "1"] in maps and ["0", str(cli.gid), "1"] in maps
        assert any(m[0] == "1" and int(m[2]) >= 65536 for m in maps)
    else:
        assert maps == [["0", str(cli.uid), "1"], ["0", str(cli.gid), "1"]]


def test_debug_log_shows_mapping(cli, busybox_rootfs):
    proc = cli.run("--log-level", "debug", "run", R, busybox_rootfs, "true")
    assert proc.returncode == 0, proc.stderr
    mode = {"root": "root", "sub": "full", "nosub": "single"}[cli.name]
    assert f"{mode} mapping" in proc.stderr


def test_keep_id(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "id -u; id -g", "--userns=keep-id"))
    assert out.split() == [str(cli.uid), str(cli.gid)]


@pytest.mark.parametrize(
    "spec,expect",
    [("1000", "1000 1000"), ("user", "1000 1000"), ("1000:100", "1000 100"),
     ("nobody", "65534 65534"), ("daemon:users", "1 100"), ("4242", "4242 0")],
)
def test_user_option(cli, busybox_rootfs, spec, expect):
    out = ok(sh(cli, busybox_rootfs, "echo $(id -u) $(id -g); echo $HOME", "-u", spec))
    first, home = out.splitlines()
    assert first == expect
    assert home == {"user": "/home/user", "1000": "/home/user", "1000:100": "/home/user",
                    "nobody": "/nonexistent", "daemon:users": "/usr/sbin", "4242": "/"}.get(spec, home)


def test_full_mapping_allows_chown(cli, busybox_rootfs):
    proc = sh(cli, busybox_rootfs, "touch /tmp/f && chown 1000:100 /tmp/f && stat -c '%u %g' /tmp/f",
              "--tmpfs", "/tmp")
    if cli.name == "nosub":
        # without subordinate ids only one id exists in the namespace (documented)
        assert proc.returncode != 0 and "Invalid argument" in proc.stderr
    else:
        assert ok(proc).strip() == "1000 100"


def test_unknown_user_is_one_line(cli, busybox_rootfs):
    line = one_error_line(cli.run("run", "-u", "nosuchuser", R, busybox_rootfs, "true"))
    assert "unable to find user nosuchuser" in line


# ---------------------------------------------------------------- namespaces


def test_pid1_and_no_host_pids(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '"))
    pid1, pids = out.splitlines()
    assert pid1 == "1"
    assert len(pids.split()) <= 6, pids  # sh and its pipeline, never the host's hundreds
    assert str(os.getpid()) not in pids.split() or int(os.getpid()) < 4


def test_hostname(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "hostname"))
    assert out.strip() == os.uname().nodename  # --network host: the host's name, like docker
    out = ok(sh(cli, busybox_rootfs, "hostname; echo $HOSTNAME", "--hostname", "box"))
    assert out.split() == ["box", "box"]
    out = ok(sh(cli, busybox_rootfs, "hostname", "--network", "none"))
    assert re.fullmatch(r"[0-9a-f]{12}", out.strip())


def test_hostname_change_stays_inside(cli, busybox_rootfs):
    before = os.uname().nodename
    ok(sh(cli, busybox_rootfs, "hostname changed-inside && hostname"))
    assert os.uname().nodename == before


def test_network_none_has_only_loopback_up(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "ls /sys/class/net; ip -o link show lo", "--network", "none"))
    names, lo = out.splitlines()[0], out.splitlines()[-1]
    assert names.split() == ["lo"]
    assert "UP" in lo
    host = ok(sh(cli, busybox_rootfs, "ls /sys/class/net"))
    assert set(host.split()) == set(os.listdir("/sys/class/net"))


def test_ipc_namespace_is_new(cli, busybox_rootfs):
    inside = ok(sh(cli, busybox_rootfs, "for n in ipc uts mnt; do readlink /proc/self/ns/$n; done"))
    for line, ns in zip(inside.split(), ("ipc", "uts", "mnt")):
        assert line != os.readlink(f"/proc/self/ns/{ns}")


# ---------------------------------------------------------------- mounts


def test_mounts(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "cat /proc/mounts"))
    table = {line.split()[1]: line.split() for line in out.splitlines()}
    assert table["/proc"][2] == "proc"
    assert "ro" in table["/sys"][3].split(",")
    assert table["/dev"][2] == "tmpfs"
    assert table["/dev/pts"][2] == "devpts"
    assert table["/dev/shm"][2] == "tmpfs"
    # the old root is gone: nothing from the host's mount table below / but ours
    assert not any(m.startswith("/work") or m.startswith("/root") for m in table)


def test_sys_is_readonly(cli, busybox_rootfs):
    proc = sh(cli, busybox_rootfs, "echo x > /sys/kernel/some_file")
    assert proc.returncode != 0


def test_dev_is_minimal(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "ls -A /dev | tr '\\n' ' '; echo; for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done; echo x > /dev/null; head -c 4 /dev/zero | od -An -tx1; echo ok > /dev/shm/f && cat /dev/shm/f"))
    lines = out.splitlines()
    assert set(lines[0].split()) == {"null", "zero", "full", "random", "urandom", "tty", "pts",
                                     "ptmx", "shm", "mqueue", "fd", "stdin", "stdout", "stderr"}
    assert lines[1:6] == ["pts/ptmx", "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                          "/proc/self/fd/2"]
    assert lines[6].split() == ["00"] * 4
    assert lines[7] == "ok"


def test_etc_files_provided_without_changing_rootfs(cli):
    rootfs = cli.rootfs()
    hosts = os.path.join(rootfs, "etc", "hosts")
    with open(hosts, "w") as f:
        f.write("# image's own hosts\n")
    os.chown(hosts, *(os.stat(rootfs).st_uid, os.stat(rootfs).st_gid))
    out = ok(sh(cli, rootfs, "cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf",
                "--hostname", "box"))
    hosts_in, hostname_in, resolv_in = out.split("---\n")
    assert "box" in hosts_in and "localhost" in hosts_in
    assert hostname_in.strip() == "box"
    with open("/etc/resolv.conf") as f:
        assert resolv_in.strip() == f.read().strip()
    with open(hosts) as f:
        assert f.read() == "# image's own hosts\n"


def test_pivot_root_not_chroot(cli, busybox_rootfs):
    # After pivot_root with the old root detached, / is the mount root and no path leads out.
    out = ok(sh(cli, busybox_rootfs, "cd /; cd ..; pwd; ls /proc/1/root/ | tr '\\n' ' '; grep -c . /proc/self/mountinfo"))
    lines = out.splitlines()
    assert lines[0] == "/"
    assert "bin" in lines[1].split()
    mountinfo = ok(sh(cli, busybox_rootfs, "cat /proc/self/mountinfo"))
    root_line = [line for line in mountinfo.splitlines() if line.split()[4] == "/"]
    assert len(root_line) == 1


# ---------------------------------------------------------------- options


def test_environment_defaults_and_options(cli, busybox_rootfs, tmp_path):
    env_file = os.path.join(cli.workdir, "env.list")
    with open(env_file, "w") as f:
        f.write("# comment\nFROM_FILE=yes\n\nOVERRIDE=file\n")
    os.chmod(env_file, 0o644)
    out = ok(cli.run("run", "--env-file", env_file, "-e", "A=1", "-e", "OVERRIDE=cli", "-e", "FROM_HOST",
                     R, busybox_rootfs, "env", env={"FROM_HOST": "hostval"}))
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/root"
    assert env["HOSTNAME"] == os.uname().nodename
    assert env["A"] == "1" and env["FROM_FILE"] == "yes" and env["OVERRIDE"] == "cli"
    assert env["FROM_HOST"] == "hostval"
    assert "TERM" not in env
    assert "ROOTLESS_ROOT" not in env  # the host environment does not leak in


def test_workdir(cli, busybox_rootfs):
    assert ok(sh(cli, busybox_rootfs, "pwd", "-w", "/tmp")).strip() == "/tmp"
    rootfs = cli.rootfs()
    assert ok(sh(cli, rootfs, "pwd", "-w", "/new/work/dir")).strip() == "/new/work/dir"
    one_error_line(cli.run("run", "-w", "relative", R, busybox_rootfs, "true"))


def test_volume_rw_and_ownership(cli):
    rootfs = cli.rootfs()  # /data is created: the tree must be the user's
    data = cli.mkdir("data")
    with open(os.path.join(data, "from-host"), "w") as f:
        f.write("hello\n")
    out = ok(sh(cli, rootfs, "cat /data/from-host; echo inside > /data/from-container", "-v",
                f"{data}:/data"))
    assert out.strip() == "hello"
    st = os.stat(os.path.join(data, "from-container"))
    assert (st.st_uid, st.st_gid) == (cli.uid, cli.gid)  # container root is the user


def test_volume_ro_is_enforced(cli):
    rootfs = cli.rootfs()  # /data is created: the tree must be the user's
    data = cli.mkdir("ro")
    proc = sh(cli, rootfs, "touch /data/x", "-v", f"{data}:/data:ro")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr
    assert not os.path.exists(os.path.join(data, "x"))
    # ro cannot be undone from inside either
    proc = sh(cli, rootfs, "mount -o remount,rw /data && touch /data/x", "-v", f"{data}:/data:ro")
    assert not os.path.exists(os.path.join(data, "x"))


def test_volume_creates_missing_mount_point(cli):
    rootfs = cli.rootfs()
    data = cli.mkdir("deep")
    ok(sh(cli, rootfs, "echo yes > /new/deep/mnt/f", "-v", f"{data}:/new/deep/mnt"))
    with open(os.path.join(data, "f")) as f:
        assert f.read() == "yes\n"


def test_volume_file(cli, busybox_rootfs):
    d = cli.mkdir("file")
    path = os.path.join(d, "conf")
    with open(path, "w") as f:
        f.write("cfg\n")
    os.chmod(path, 0o644)
    rootfs = cli.rootfs()
    assert ok(sh(cli, rootfs, "cat /etc/app.conf", "-v", f"{path}:/etc/app.conf:ro")) == "cfg\n"


def test_volume_missing_source_is_one_line(cli, busybox_rootfs):
    line = one_error_line(cli.run("run", "-v", "/does/not/exist:/data", R, busybox_rootfs, "true"))
    assert "/does/not/exist" in line


def test_mount_propagation_is_private(cli):
    rootfs = cli.rootfs()  # /data is created: the tree must be the user's
    data = cli.mkdir("prop")
    ok(sh(cli, rootfs, "mkdir -p /data/sub && mount -t tmpfs none /data/sub && touch /data/sub/x",
          "-v", f"{data}:/data"))
    assert os.listdir(os.path.join(data, "sub")) == []
    with open("/proc/self/mountinfo") as f:
        assert os.path.join(data, "sub") not in f.read()


def test_read_only_root_and_tmpfs(cli):
    rootfs = cli.rootfs()  # /scratch is created: the tree must be the user's
    proc = sh(cli, rootfs, "touch /root/x", "--read-only")
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr
    out = ok(sh(cli, rootfs, "touch /scratch/x && grep ' /scratch ' /proc/mounts",
                "--read-only", "--tmpfs", "/scratch"))
    assert out.split()[2] == "tmpfs"


def test_entrypoint(cli, busybox_rootfs):
    out = ok(cli.run("run", "--entrypoint", "echo", R, busybox_rootfs, "a", "b"))
    assert out == "a b\n"


def test_options_after_command_go_to_the_command(cli, busybox_rootfs):
    out = ok(cli.run("run", R, busybox_rootfs, "ls", "-d", "/bin"))
    assert out.strip() == "/bin"


# ---------------------------------------------------------------- isolation


def test_no_new_privs_and_caps_only_in_userns(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "grep NoNewPrivs /proc/self/status; mknod /tmp/null c 1 3 2>&1; echo rc=$?",
                "--tmpfs", "/tmp"))
    assert "NoNewPrivs:\t1" in out
    assert "rc=0" not in out  # no CAP_MKNOD over the host's devices


def test_no_fd_leaks(cli, busybox_rootfs):
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        # look at a plain program started in the container (busybox sh itself keeps
        # private fds around while it sets up pipes and redirections)
        proc = cli.popen("run", R, busybox_rootfs, "sh", "-c", "sleep 5 & ls /proc/$!/fd; kill $!",
                         stdout=-1, stderr=-1, text=True, pass_fds=(r,))
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(r)
        os.close(w)
    assert proc.returncode == 0, err
    assert out.split() == ["0", "1", "2"]


def test_host_processes_invisible(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "ps -o pid,comm"))
    assert "pytest" not in out and "python" not in out


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137)])
def test_exit_codes(cli, busybox_rootfs, script, code):
    opts = ("--init",) if "kill" in script else ()
    assert sh(cli, busybox_rootfs, script, *opts).returncode == code


def test_command_not_found_127(cli, busybox_rootfs):
    line = one_error_line(cli.run("run", R, busybox_rootfs, "no-such-command"), 127)
    assert "no-such-command" in line and "not found" in line


def test_not_executable_126(cli, busybox_rootfs):
    line = one_error_line(cli.run("run", R, busybox_rootfs, "/etc/passwd"), 126)
    assert "permission denied" in line


def test_rootfs_missing_or_not_dir(cli, busybox_rootfs):
    assert "does not exist" in one_error_line(cli.run("run", R, "/no/such/rootfs", "true"))
    assert "not a directory" in one_error_line(cli.run("run", R, busybox_rootfs + "/etc/passwd", "true"))


# ---------------------------------------------------------------- streams & signals


def test_pipe_with_i(cli, busybox_rootfs):
    proc = cli.run("run", "-i", R, busybox_rootfs, "cat", input="hi\n")
    assert ok(proc) == "hi\n"


def test_stdin_closed_without_i(cli, busybox_rootfs):
    proc = cli.run("run", R, busybox_rootfs, "cat", input="should not arrive\n")
    assert ok(proc) == ""


def test_large_pipe_roundtrip(cli, busybox_rootfs):
    data = os.urandom(3 << 20)
    proc = cli.run("run", "-i", R, busybox_rootfs, "cat", input=data)
    assert proc.returncode == 0 and proc.stdout == data


@pytest.mark.parametrize("sig", ["TERM", "INT", "HUP", "USR1", "USR2"])
def test_signals_forwarded(cli, busybox_rootfs, sig):
    script = f'trap "echo got {sig}; exit 42" {sig}; echo ready; while :; do sleep 0.05; done'
    proc = cli.popen("run", R, busybox_rootfs, "sh", "-c", script, stdout=-1, stderr=-1, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(getattr(signal, "SIG" + sig))
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 42, err
    assert f"got {sig}" in out


def test_init_forwards_and_reaps(cli, busybox_rootfs):
    out = ok(sh(cli, busybox_rootfs, "echo $$; (sleep 0.1 &) ; sleep 0.3; ps -o stat,comm | grep -c Z || true",
                "--init"))
    pid, zombies = out.split()
    assert pid != "1" and zombies == "0"
    proc = cli.popen("run", "--init", R, busybox_rootfs, "sleep", "100", stdout=-1, stderr=-1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


def test_tty_interactive_shell(cli, busybox_rootfs, pty_run):
    out, status = pty_run(
        cli.argv("run", "-it", R, busybox_rootfs, "sh"),
        cli.environ(),
        [(r"# $|# ", "tty; stty size; echo TERM=$TERM\r"), (r"TERM=xterm", "exit 5\r")],
        rows=33, cols=101, owner=(cli.uid, cli.gid),
    )
    assert status == 5, out
    assert "/dev/pts/0" in out
    assert "33 101" in out


def test_tty_ctrl_c_and_job_control(cli, busybox_rootfs, pty_run):
    # "sta''rted" only matches the command's output, not the terminal's echo of it
    out, status = pty_run(
        cli.argv("run", "-it", R, busybox_rootfs, "sh"),
        cli.environ(),
        [(r"# ", "(echo sta''rted; exec sleep 30)\r"), ("started", "\x03"),
         (r"# ", "echo rc=$?\r"), (r"rc=130", "sleep 30 &\r"), (r"# ", "jobs\r"),
         (r"\[1\]\+? +Running", "kill %1; wait; echo do''ne\r"), ("done", "exit\r")],
        timeout=20, owner=(cli.uid, cli.gid),
    )
    assert status == 0, out
    assert "rc=130" in out


def test_tty_initial_window_size(cli, busybox_rootfs, pty_run):
    out, status = pty_run(
        cli.argv("run", "-it", R, busybox_rootfs, "sh", "-c", "stty size"),
        cli.environ(), [], rows=50, cols=132, owner=(cli.uid, cli.gid),
    )
    assert status == 0 and "50 132" in out


# ---------------------------------------------------------------- misc


def test_version(cli):
    out = ok(cli.run("--version"))
    assert re.fullmatch(r"rootless version \S+ \(C core \S+\)\n", out)


def test_help_answers(cli):
    out = ok(cli.run("run", "--help"))
    assert "--volume" in out and "Exit status" in out
    proc = cli.run("run", "--bogus")
    assert proc.returncode == 125 and "unknown flag: --bogus" in proc.stderr and "Traceback" not in proc.stderr


def test_fakeroot_emulates_and_records_chown(cli):
    rootfs = cli.rootfs()
    proc = cli.run("run", "--rm", "--fakeroot", R, rootfs, "sh", "-c",
                   "touch /tmp/f && mkdir /tmp/d && chown 1000:100 /tmp/f && chown -R 42:43 /tmp/d "
                   "&& su nobody -s /bin/sh -c true 2>/dev/null; echo ok; chown 1 /nope; echo rc=$?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "ok" and "rc=1" in proc.stdout  # a missing file still fails
    # the owners asked for are recorded where the layer packer reads them
    assert os.getxattr(os.path.join(rootfs, "tmp", "f"), "user.containers.override_stat").startswith(b"1000:100:")
    assert os.getxattr(os.path.join(rootfs, "tmp", "d"), "user.containers.override_stat").startswith(b"42:43:")
    assert os.stat(os.path.join(rootfs, "tmp", "f")).st_uid == cli.uid  # the file itself is untouched


def test_default_seccomp_profile(cli, tmp_path_factory):
    """The kernel keyring (not namespaced) is closed by default, open when unconfined."""
    import shutil
    import subprocess

    src = os.path.join(str(tmp_path_factory.mktemp("keyctl")), "keyctl.c")
    with open(src, "w") as f:
        f.write('#include <errno.h>\n#include <stdio.h>\n#include <sys/syscall.h>\n#include <unistd.h>\n'
                'int main(void) { long r = syscall(SYS_keyctl, 0, -3, 0);\n'
                ' if (r < 0 && errno == EPERM) { puts("denied"); return 0; }\n'
                ' puts("allowed"); return 0; }\n')
    rootfs = cli.rootfs()
    binary = os.path.join(rootfs, "bin", "keyctl_test")
    subprocess.run(["gcc", "-static", "-O2", "-o", binary, src], check=True)
    shutil.chown(binary, cli.uid, cli.gid)
    assert ok(cli.run("run", "--rm", R, rootfs, "keyctl_test")) == "denied\n"
    assert ok(cli.run("run", "--rm", "--security-opt", "seccomp=unconfined", R, rootfs, "keyctl_test")) == "allowed\n"
    proc = cli.run("run", "--rm", "--security-opt", "bogus=1", R, rootfs, "true")
    assert proc.returncode == 125 and "unsupported --security-opt" in proc.stderr
