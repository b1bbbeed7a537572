"""Isolation, tested from inside a container, as root, "sub" and "nosub".

What a hostile image would try, on `run --rootfs` and on image containers started
with `run -d` and entered with `exec`: reach or signal host processes, reach or
write host paths (through /proc/<pid>/root, chroot and fchdir escapes, umount and
remount of the container's mounts, pivot_root, open_by_handle_at), write the host's
kernel settings through /proc/sys, gain ids through a setuid binary, use file
descriptors the runtime inherited (the runc CVE-2024-21626 class, including
`-w /proc/self/fd/N`), create device nodes, write a read-only root, and call what
the default seccomp profile denies.

Most probes are a small static C program (isoprobe.c, built here with gcc) so that
they do exactly what they say; its "escape" mode prints one line per trick,
"blocked" or "ESCAPED", and the test also checks on the host that nothing appeared.
See docs/security.md for the model these tests hold the runtime to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from helpers import require
from helpers.checks import ok

pytestmark = pytest.mark.needs_userns

R = "--rootfs"
PROBE_SRC = os.path.join(os.path.dirname(__file__), "isoprobe.c")
TRICKS = ("direct", "proc-pid-root", "chroot-dotdot", "chroot-fchdir", "umount-root", "pivot-root",
          "open-by-handle")


def sh(cli, rootfs, script, *opts, **kw):  # type: ignore[no-untyped-def]
    return cli.run("run", "--rm", *opts, R, rootfs, "sh", "-c", script, **kw)


def words(out: str) -> dict[str, str]:
    """'name value' lines as a dict."""
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="session")
def isoprobe(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    gcc = shutil.which("gcc")
    require(gcc is not None, "gcc is needed to build the isolation probe (apt install gcc)")
    out = os.path.join(str(tmp_path_factory.mktemp("isoprobe")), "isoprobe")
    proc = subprocess.run([str(gcc), "-static", "-O2", "-o", out, PROBE_SRC], capture_output=True, text=True)
    require(proc.returncode == 0, f"gcc -static failed (libc6-dev?): {proc.stderr[-400:]}")
    return out


def probe_rootfs(cli, isoprobe: str, name: str = "isoprobe", mode: int = 0o755) -> str:  # type: ignore[no-untyped-def]
    """A private busybox rootfs of the user's with the probe as /bin/<name>."""
    rootfs = cli.rootfs()
    dest = os.path.join(rootfs, "bin", name)
    shutil.copyfile(isoprobe, dest)
    os.chown(dest, cli.uid, cli.gid)
    os.chmod(dest, mode)
    return rootfs


def host_dir(cli, name: str = "host-only") -> str:  # type: ignore[no-untyped-def]
    """A host directory of the user's, not given to the container, with a marker."""
    d = cli.mkdir(name)
    with open(os.path.join(d, "marker"), "w") as f:
        f.write("host\n")
    return d


def assert_no_escape(out: str, hostdir: str) -> None:
    results = words(out)
    assert {t: results.get(t) for t in TRICKS} == {t: "blocked" for t in TRICKS}, out
    assert os.listdir(hostdir) == ["marker"]  # nothing was created through any trick


@contextlib.contextmanager
def host_process(cli) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def,type-arg]
    """A host `sleep` running as the same user as the container."""
    proc = subprocess.Popen(cli.prefix() + ["sleep", "300"], env=cli.environ(), start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def host_fds(cli) -> Iterator[list[int]]:  # type: ignore[no-untyped-def]
    """Inheritable fds a careless parent could pass on: a host directory (the CVE's
    target), a file and a socket; and a close-on-exec directory fd besides."""
    d = host_dir(cli, "fd-target")
    opened = [os.open(d, os.O_RDONLY | os.O_DIRECTORY), os.open(os.path.join(d, "marker"), os.O_RDONLY)]
    a, b = __import__("socket").socketpair()
    opened += [a.detach(), b.detach()]
    for fd in opened:
        os.set_inheritable(fd, True)
    private = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield opened
    finally:
        for fd in opened + [private]:
            os.close(fd)


def communicate(proc: subprocess.Popen) -> tuple[int, str, str]:  # type: ignore[type-arg]
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# ---------------------------------------------------------------- processes


def test_host_processes_invisible_and_unkillable(cli, busybox_rootfs):
    with host_process(cli) as host:
        script = (f"ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo; "
                  f"test -e /proc/{host.pid} && echo VISIBLE; "
                  f"kill -9 {host.pid} 2>&1; echo kill=$?; kill -0 -1 2>&1; echo killall=$?")
        out = ok(sh(cli, busybox_rootfs, script))
        assert host.poll() is None, "a container process killed a host process"
    pids, *rest = out.splitlines()
    assert all(int(p) < 20 for p in pids.split()), pids  # the container's few, never the host's
    assert "VISIBLE" not in out
    assert "kill=1" in rest and "No such process" in out


# ---------------------------------------------------------------- /proc and /sys


@pytest.mark.parametrize("network", ["host", "none"])
def test_proc_sys_and_kernel_files_protected(cli, busybox_rootfs, network):
    """/proc/sys, /proc/sysrq-trigger, /proc/irq... are read-only, kcore and friends
    masked, /sys read-only, and none of it can be unmounted, remounted read-write or
    bypassed with a fresh proc or sysfs mount (the mount table is locked). Writing
    a sysctl its own value back is harmless, and fails."""
    script = r"""
    sysctl() { cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness 2>/dev/null && echo "$1 WRITABLE" || echo "$1 denied"; }
    try() { name=$1; shift; "$@" 2>/dev/null && echo "$name DONE" || echo "$name denied"; }
    sysctl sysctl
    (: > /proc/sysrq-trigger) 2>/dev/null && echo "sysrq WRITABLE" || echo "sysrq denied"
    try umount-proc-sys umount /proc/sys
    try umount-l-proc-sys umount -l /proc/sys
    try umount-proc umount -l /proc
    try remount-proc-sys mount -o remount,bind,rw /proc/sys
    try remount-sys mount -o remount,bind,rw /sys
    sysctl sysctl-after
    mkdir -p /tmp/p /tmp/s
    try proc-mount mount -t proc proc /tmp/p
    if mount -t sysfs sysfs /tmp/s 2>/dev/null; then
        grep -q ' /tmp/s sysfs ro[ ,]' /proc/mounts && echo "sysfs-mount read-only" || echo "sysfs-mount RW"
    else
        echo "sysfs-mount denied"
    fi
    for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do
        [ -e $f ] && echo "$f $(cat $f 2>/dev/null | wc -c)"
    done
    for d in /proc/acpi /proc/scsi /sys/firmware; do [ -e $d ] && echo "$d $(ls -A $d | wc -l)"; done
    grep -E ' /proc/sys | /sys ' /proc/self/mountinfo | awk '{print "opts" $5, $6}'
    """
    out = ok(sh(cli, busybox_rootfs, script, "--network", network, "--tmpfs", "/tmp"))
    r = words(out)
    for key in ("sysctl", "sysrq", "sysctl-after"):
        assert r[key] == "denied", out
    for key in ("umount-proc-sys", "umount-l-proc-sys", "umount-proc", "remount-proc-sys", "remount-sys",
                "proc-mount"):
        assert r[key] == "denied", out
    assert r["sysfs-mount"] in ("denied", "read-only"), out
    for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi",
                 "/proc/scsi", "/sys/firmware"):
        if path in r:
            assert r[path] == "0", f"{path} is not masked:\n{out}"
    assert r["opts/proc/sys"].split(",")[0] == "ro" and r["opts/sys"].split(",")[0] == "ro", out


# ---------------------------------------------------------------- host paths


def test_mounts_locked_and_host_paths_unreachable(cli, isoprobe):
    """A read-only volume and a read-only root stay read-only, cannot be unmounted to
    reveal what is below, and no trick reaches a host directory the container was not
    given."""
    rootfs = probe_rootfs(cli, isoprobe)
    data = cli.mkdir("ro-volume")
    hostdir = host_dir(cli)
    script = f"""
    mount -o remount,bind,rw /data 2>/dev/null; touch /data/x 2>/dev/null && echo VOLUME-WRITABLE
    umount /data 2>/dev/null && echo VOLUME-UNMOUNTED; umount -l /data 2>/dev/null && echo VOLUME-UNMOUNTED
    mount -o remount,bind,rw / 2>/dev/null; touch /x 2>/dev/null && echo ROOT-WRITABLE
    umount /dev 2>/dev/null && echo DEV-UNMOUNTED
    isoprobe escape {hostdir}
    """
    out = ok(sh(cli, rootfs, script, "--read-only", "--tmpfs", "/tmp", "-v", f"{data}:/data:ro"))
    for bad in ("VOLUME-WRITABLE", "VOLUME-UNMOUNTED", "ROOT-WRITABLE", "DEV-UNMOUNTED"):
        assert bad not in out, out
    assert_no_escape(out, hostdir)
    assert os.listdir(data) == [] and not os.path.exists(os.path.join(rootfs, "x"))


def test_nested_user_namespace_cannot_unlock_mounts(cli, isoprobe):
    """The default profile allows a nested user namespace (it grants nothing the
    container root lacks); the mounts stay locked in there too."""
    rootfs = probe_rootfs(cli, isoprobe)
    script = ("unshare -U -m -r sh -c 'umount /proc/sys 2>/dev/null && echo UNMOUNTED; "
              "mount -o remount,bind,rw /proc/sys 2>/dev/null && echo REMOUNTED; "
              "cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness 2>/dev/null && echo WRITABLE; echo done'")
    out = ok(sh(cli, rootfs, script))
    assert out.strip() == "done", out


# ---------------------------------------------------------------- privileges


def test_setuid_binary_gains_nothing(cli, isoprobe):
    """no_new_privs: a setuid-root binary run by uid 1000 stays uid 1000. (It would
    still only be the container's root, which is the calling user on the host.)"""
    if cli.name == "nosub":
        pytest.skip("moot without subordinate ids: the namespace maps only uid 0, so there is "
                    "no other id to start from and none to gain (-u 1000 is refused)")
    rootfs = probe_rootfs(cli, isoprobe, name="suidprobe", mode=0o4755)
    out = ok(cli.run("run", "--rm", "-u", "1000", R, rootfs, "sh", "-c",
                     "stat -c %A /bin/suidprobe; grep NoNewPrivs /proc/self/status; suidprobe ids"))
    mode, nnp, ids = out.splitlines()
    assert mode == "-rwsr-xr-x"  # the bit is there, and the root filesystem honours it
    assert nnp.split() == ["NoNewPrivs:", "1"]
    assert ids == "1000 1000"
    root = ok(cli.run("run", "--rm", R, rootfs, "awk", '$5 == "/" {print $6}', "/proc/self/mountinfo"))
    assert root.strip() and "nosuid" not in root  # so it is no_new_privs that stopped it


def test_devices_minimal_and_mknod_denied(cli, busybox_rootfs):
    script = r"""
    for d in sda vda nvme0n1 mem kmem port kmsg fuse net/tun loop0 loop-control console; do
        [ -e /dev/$d ] && echo "present $d"
    done
    mknod /tmp/mem c 1 1 2>&1; echo "mknod-mem $?"
    mknod /tmp/sda b 8 0 2>&1; echo "mknod-sda $?"
    mknod /dev/kmsg c 1 11 2>&1; echo "mknod-kmsg $?"
    echo "pts $(ls /dev/pts | tr '\n' ' ')"
    echo "extra $(head -c 2 /dev/extra 2>/dev/null | od -An -tx1)"
    """
    out = ok(sh(cli, busybox_rootfs, script, "--tmpfs", "/tmp"))
    r = words(out)
    assert "present" not in r, out
    for key in ("mknod-mem", "mknod-sda", "mknod-kmsg"):
        assert r[key] != "0", out
    assert out.count("Operation not permitted") == 3, out
    assert r["pts"] == "ptmx"  # a private devpts: no host terminals
    assert r["extra"] == ""
    # --device is the way to add one
    out = ok(sh(cli, busybox_rootfs, script, "--tmpfs", "/tmp", "--device", "/dev/zero:/dev/extra"))
    assert words(out)["extra"] == "00 00"


def test_read_only_root_and_tmp_docker_semantics(cli):
    rootfs = cli.rootfs()
    script = ("touch /tmp/x 2>&1; echo tmp=$?; touch /root/x 2>&1; echo root=$?; "
              "touch /dev/shm/x && echo shm=0; mount -o remount,bind,rw / 2>/dev/null; touch /x 2>&1; echo remount=$?")
    out = ok(sh(cli, rootfs, script, "--read-only"))
    assert "tmp=1" in out and "root=1" in out and "shm=0" in out and "remount=1" in out, out
    assert out.count("Read-only file system") == 3
    out = ok(sh(cli, rootfs, "touch /tmp/x && echo tmp=0", "--read-only", "--tmpfs", "/tmp"))
    assert out.strip() == "tmp=0"
    assert not os.path.exists(os.path.join(rootfs, "x")) and not os.path.exists(os.path.join(rootfs, "tmp", "x"))


# ---------------------------------------------------------------- file descriptors


def test_no_host_fds_and_no_host_cwd(cli, isoprobe):
    """Nothing the runtime inherited reaches the container: not as an open fd (listed
    with their targets), not through PID 1 with --init, and not as the working
    directory (`-w /proc/self/fd/N`, or a WorkingDir symlink to it: runc
    CVE-2024-21626)."""
    rootfs = probe_rootfs(cli, isoprobe)
    os.symlink("/proc/self/fd/3", os.path.join(rootfs, "workdir-link"))
    with host_fds(cli) as fds:
        for opts in ((), ("--init",)):
            proc = cli.popen("run", "--rm", *opts, R, rootfs, "sh", "-c", "isoprobe fds; echo; ls /proc/1/fd; true",
                             stdout=-1, stderr=-1, text=True, pass_fds=fds)
            code, out, err = communicate(proc)
            assert code == 0, err
            listing, pid1 = out.split("\n\n")
            got = words(listing)
            assert sorted(got) == ["0", "1", "2"], out
            assert all(t.startswith(("/dev/null", "pipe:", "socket:")) for t in got.values()), out
            # sh itself, or the --init PID 1: not dumpable, so only real root may list
            # its fds (their targets stay unreadable), others see nothing
            assert pid1.split() in (["0", "1", "2"], []), out
        for workdir in [f"/proc/self/fd/{fd}" for fd in fds] + ["/proc/self/cwd", "/proc/1/root", "/workdir-link"]:
            proc = cli.popen("run", "--rm", "-w", workdir, R, rootfs, "sh", "-c", "echo RAN; pwd; ls",
                             stdout=-1, stderr=-1, text=True, pass_fds=fds)
            code, out, err = communicate(proc)
            assert code == 126 and "RAN" not in out, (workdir, out, err)
            assert err.count("\n") == 1 and "working directory" in err, err


def test_runtime_environment_not_visible(cli, busybox_rootfs):
    """The runtime's own (host) environment and command line do not show inside, also
    not through --init's PID 1, which is a copy of the runtime that never execs."""
    script = "env; cat /proc/1/environ /proc/1/cmdline | tr '\\0' '\\n'; ps -o args"
    for opts in ((), ("--init",)):
        proc = cli.run("run", "--rm", *opts, R, busybox_rootfs, "sh", "-c", script,
                       env={"HOST_SECRET": "s3cr3t-value"})
        out = ok(proc)
        assert "s3cr3t-value" not in out and "--rootfs" not in out, out
    # --init's PID 1 is a copy of the runtime's memory: container root cannot read it
    proc = cli.run("run", "--rm", "--init", R, busybox_rootfs, "sh", "-c",
                   "cat /proc/1/maps >/dev/null && echo MAPS; "
                   "dd if=/proc/1/mem of=/dev/null bs=1 count=1 2>/dev/null && echo MEM; echo done")
    assert ok(proc).split() == ["done"], proc.stdout


# ---------------------------------------------------------------- seccomp


def test_default_seccomp_profile_denies(cli, isoprobe):
    rootfs = probe_rootfs(cli, isoprobe)
    r = words(ok(cli.run("run", "--rm", R, rootfs, "isoprobe", "seccomp")))
    for call in ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "syslog",
                 "keyctl-x32"):
        assert r[call] == "EPERM", (call, r)
    assert r["keyctl-i386"] in ("EPERM", "unavailable"), r  # the i386 entry point is filtered too
    assert r["unshare-user"] == "ok"  # allowed on purpose (docs/security.md)
    # the same calls reach the kernel when unconfined (so the EPERMs above are the profile's)
    u = words(ok(cli.run("run", "--rm", "--security-opt", "seccomp=unconfined", R, rootfs, "isoprobe", "seccomp")))
    assert u["keyctl"] == "ok" and u["add_key"] == "EINVAL" and u["perf_event_open"] == "EFAULT", u
    assert u["keyctl-x32"] != "EPERM" and u["keyctl-i386"] in ("ok", "unavailable"), u


# ---------------------------------------------------------------- image containers and exec


def test_image_container_and_exec(cli, busybox_image, isoprobe):
    """The same boundaries for a container from an image, entered with exec."""
    with open(isoprobe, "rb") as f:
        probe = f.read()
    ok(cli.run("run", "-d", "--name", "iso", "--read-only", "--tmpfs", "/tmp", busybox_image, "sleep", "300"))
    try:
        ok(cli.run("exec", "-i", "iso", "sh", "-c", "cat > /tmp/isoprobe && chmod 755 /tmp/isoprobe",
                   input=probe))
        hostdir = host_dir(cli)
        with host_process(cli) as host:
            out = ok(cli.run("exec", "iso", "sh", "-c", f"""
                ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '; echo
                kill -9 {host.pid} 2>/dev/null && echo KILLED
                touch /x 2>/dev/null && echo ROOT-WRITABLE
                mount -o remount,bind,rw / 2>/dev/null; touch /x 2>/dev/null && echo ROOT-WRITABLE
                umount /proc/sys 2>/dev/null && echo UNMOUNTED
                cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness 2>/dev/null && echo SYSCTL-WRITABLE
                grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t'
                /tmp/isoprobe escape {hostdir}
                """))
            assert host.poll() is None
        pids = out.splitlines()[0].split()
        assert all(int(p) < 50 for p in pids), pids
        for bad in ("KILLED", "ROOT-WRITABLE", "UNMOUNTED", "SYSCTL-WRITABLE"):
            assert bad not in out, out
        assert "NoNewPrivs:1" in out and "Seccomp:2" in out
        assert_no_escape(out, hostdir)
        with host_fds(cli) as fds:
            proc = cli.popen("exec", "iso", "/tmp/isoprobe", "fds", stdout=-1, stderr=-1, text=True, pass_fds=fds)
            code, out, err = communicate(proc)
            assert code == 0, err
            assert sorted(words(out)) == ["0", "1", "2"], out
            for workdir in [f"/proc/self/fd/{fds[0]}", "/proc/1/cwd", "/proc/1/root"]:
                proc = cli.popen("exec", "-w", workdir, "iso", "sh", "-c", "echo RAN; pwd", stdout=-1, stderr=-1,
                                 text=True, pass_fds=fds)
                code, out, err = communicate(proc)
                assert code == 126 and "RAN" not in out, (workdir, out, err)
    finally:
        cli.run("rm", "-f", "iso")


def test_fuse_daemons_are_outside_the_container(cli, busybox_image, isoprobe):
    """With fuse-overlayfs, the FUSE daemon keeps the host's view of the filesystem:
    it must not be in the container's PID namespace, where a process of the same
    user could open /proc/<pid>/root or ptrace it."""
    from helpers import has_fuse

    require(has_fuse(), "fuse-overlayfs and /dev/fuse are needed")
    with open(isoprobe, "rb") as f:
        probe = f.read()
    hostdir = host_dir(cli)
    script = (f"cat > /tmp/isoprobe && chmod 755 /tmp/isoprobe && ps -o comm | tr '\\n' ' ' && echo && "
              f"/tmp/isoprobe escape {hostdir} && echo fuse > /etc/written && cat /etc/written")
    proc = cli.run("--storage-driver", "fuse-overlayfs", "run", "--rm", "-i", "--tmpfs", "/tmp", busybox_image,
                   "sh", "-c", script, input=probe)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "fuse" not in out.splitlines()[0], out  # ps inside: no fuse-overlayfs
    assert out.splitlines()[-1] == "fuse"  # the root is writable (the daemon serves it)
    assert_no_escape(out, hostdir)
