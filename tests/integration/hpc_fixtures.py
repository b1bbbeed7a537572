"""Fixtures for tests/integration/test_hpc.py: a real one-node Slurm, a Debian tree with
OpenMPI, and a fake NVIDIA driver. All are built here, as root, once per session.

Slurm: Debian's slurm-wlm 22.05 and munge (scripts/setup-host.sh installs them).
munged runs with a generated key on a private socket; slurmctld and slurmd run as root
with a generated slurm.conf (proctrack/linuxproc, task/none, no cgroup.conf, state in a
temporary folder, ports 16817/16818 + an offset). Users reach it through SLURM_CONF.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from helpers import TEST_TMPDIR, missing, require

DEBIAN_CACHE = "/var/cache/rootless-tests/debian-bookworm"
OPENMPI_CACHE = "/var/cache/rootless-tests/debian-bookworm-openmpi"


@dataclass(frozen=True)
class Slurm:
    conf: str
    dir: str
    node: str

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": self.conf}

    def log(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, "log", name), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""


SLURM_CONF = """\
ClusterName=rltest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/msock/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
NodeName={node} NodeAddr=127.0.0.1 CPUs=16 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _free_port_pair() -> int:
    for base in range(16817, 17817, 2):
        ok = True
        for port in (base, base + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free port pair for Slurm")


def _pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def start_slurm() -> Iterator[Slurm]:
    for tool in ("munged", "slurmctld", "slurmd"):
        if not os.path.exists(f"/usr/sbin/{tool}"):
            missing(f"needs {tool}: apt-get install slurm-wlm munge (scripts/setup-host.sh)")
    require(os.geteuid() == 0, "starting Slurm needs root")
    d = tempfile.mkdtemp(prefix="rl-slurm-", dir=TEST_TMPDIR)
    os.chmod(d, 0o755)
    for sub, mode in (("munge", 0o700), ("msock", 0o755), ("state", 0o700), ("spool", 0o700),
                      ("log", 0o755)):  # fmt: skip
        os.mkdir(os.path.join(d, sub), mode)
    key = os.path.join(d, "munge", "munge.key")
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o600)
    node = socket.gethostname().split(".")[0]
    port = _free_port_pair()
    conf = os.path.join(d, "slurm.conf")
    with open(conf, "w") as f:
        f.write(SLURM_CONF.format(node=node, dir=d, ctld_port=port, d_port=port + 1))
    os.chmod(conf, 0o644)
    slurm = Slurm(conf, d, node)
    env = dict(os.environ, SLURM_CONF=conf)
    pids: list[str] = []
    try:
        subprocess.run(["/usr/sbin/munged", "--force", f"--key-file={key}",
                        f"--socket={d}/msock/munge.sock", f"--pid-file={d}/munge/munged.pid",
                        f"--log-file={d}/log/munged.log", f"--seed-file={d}/munge/seed"],
                       check=True, capture_output=True, timeout=30)  # fmt: skip
        pids.append(f"{d}/munge/munged.pid")
        subprocess.run(["/usr/sbin/slurmctld", "-f", conf], check=True, env=env, timeout=60)
        pids.append(f"{d}/slurmctld.pid")
        subprocess.run(["/usr/sbin/slurmd", "-f", conf], check=True, env=env, timeout=60)
        pids.append(f"{d}/slurmd.pid")
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True, check=False).stdout.strip()  # fmt: skip
            if state == "idle":
                break
            time.sleep(0.5)
        if state != "idle":
            raise RuntimeError(f"the Slurm node is {state!r}, not idle:\n{slurm.log('slurmctld.log')}"
                               f"\n{slurm.log('slurmd.log')}")  # fmt: skip
        yield slurm
    finally:
        for pidfile in reversed(pids):
            pid = _pid(pidfile)
            if pid:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
        time.sleep(1)
        shutil.rmtree(d, ignore_errors=True)


def debian_tree() -> str:
    if os.path.isdir(os.path.join(DEBIAN_CACHE, "usr", "bin")):
        return DEBIAN_CACHE
    from test_acceptance import _debootstrap  # noqa: PLC0415 - the one cache

    return _debootstrap()


def openmpi_tree() -> str:
    """The Debian tree plus OpenMPI's run time (apt-get in a chroot; cached)."""
    if os.path.exists(os.path.join(OPENMPI_CACHE, "usr", "bin", "orted")):
        return OPENMPI_CACHE
    base = debian_tree()
    tmp = OPENMPI_CACHE + ".new"
    subprocess.run(["rm", "-rf", tmp], check=True)
    subprocess.run(["cp", "-a", base, tmp], check=True)
    shutil.copy("/etc/resolv.conf", os.path.join(tmp, "etc", "resolv.conf"))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LANG": "C.UTF-8"}  # fmt: skip
    for cmd in ("apt-get update -qq",
                "apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi3",
                "apt-get clean"):  # fmt: skip
        proc = subprocess.run(["chroot", tmp, "sh", "-c", cmd], env=env, capture_output=True,
                              text=True, timeout=900, check=False)  # fmt: skip
        require(proc.returncode == 0, f"{cmd} in a chroot failed (no mirror?): {proc.stderr[-800:]}")
    os.rename(tmp, OPENMPI_CACHE)
    return OPENMPI_CACHE


# ---------------------------------------------------------------- fake NVIDIA driver

FAKE_DEP_C = "int fake_dep_value(void) { return 42; }\n"
FAKE_NVML_C = """\
int fake_dep_value(void);
int nvmlInit_v2(void) { return 0; }
const char *fake_gpu_name(void) { return "Fake GPU 9000"; }
int fake_value(void) { return fake_dep_value(); }
"""
FAKE_SMI_C = r"""
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!h) { fprintf(stderr, "nvidia-smi: %s\n", dlerror()); return 9; }
    const char *(*name)(void) = (const char *(*)(void))dlsym(h, "fake_gpu_name");
    int (*value)(void) = (int (*)(void))dlsym(h, "fake_value");
    if (!name || !value) { fprintf(stderr, "nvidia-smi: missing symbols\n"); return 9; }
    DIR *d = opendir("/dev");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "nvidia", 6) != 0) continue;
        char p[300];
        snprintf(p, sizeof p, "/dev/%s", e->d_name);
        int fd = open(p, O_RDWR);
        printf("device %s %s\n", p, fd >= 0 ? "open" : "closed");
        if (fd >= 0) close(fd);
    }
    printf("GPU: %s (dep %d)\n", name(), value());
    return 0;
}
"""


@dataclass(frozen=True)
class FakeDriver:
    root: str  # ROOTLESS_NVIDIA_ROOT (bin/nvidia-smi)
    lib: str
    cache: str  # ROOTLESS_LDCONFIG_CACHE
    dev: str  # ROOTLESS_NVIDIA_DEV
    cdi_empty: str  # a CDI folder with no spec

    def env(self) -> dict[str, str]:
        return {"ROOTLESS_NVIDIA_ROOT": self.root, "ROOTLESS_LDCONFIG_CACHE": self.cache,
                "ROOTLESS_NVIDIA_DEV": self.dev, "ROOTLESS_CDI_DIRS": self.cdi_empty}  # fmt: skip


def _cc(*args: str) -> None:
    proc = subprocess.run(["gcc", "-Wall", *args], capture_output=True, text=True, check=False)
    require(proc.returncode == 0, f"gcc {' '.join(args)} failed: {proc.stderr}")


def build_fake_driver() -> Iterator[FakeDriver]:
    require(shutil.which("gcc"), "needs gcc")
    require(os.geteuid() == 0, "mknod needs root")
    d = tempfile.mkdtemp(prefix="rl-fakenv-", dir=TEST_TMPDIR)
    os.chmod(d, 0o755)
    lib, bindir, dev, cdi = (os.path.join(d, x) for x in ("lib", "bin", "dev", "cdi-empty"))
    for x in (lib, bindir, dev, cdi):
        os.mkdir(x, 0o755)
    src = os.path.join(d, "src")
    os.mkdir(src)
    for name, text in (("dep.c", FAKE_DEP_C), ("nvml.c", FAKE_NVML_C), ("smi.c", FAKE_SMI_C)):
        with open(os.path.join(src, name), "w") as f:
            f.write(text)
    _cc("-shared", "-fPIC", "-Wl,-soname,libnvidia-fake-dep.so", "-o",
        f"{lib}/libnvidia-fake-dep.so", f"{src}/dep.c")  # fmt: skip
    _cc("-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o", f"{lib}/libnvidia-ml.so.1",
        f"{src}/nvml.c", f"-L{lib}", "-lnvidia-fake-dep")  # fmt: skip
    _cc("-o", f"{bindir}/nvidia-smi", f"{src}/smi.c", "-ldl")
    with open(os.path.join(d, "ld.so.conf"), "w") as f:
        f.write(lib + "\n")
    cache = os.path.join(d, "ld.so.cache")
    subprocess.run(["ldconfig", "-X", "-C", cache, "-f", os.path.join(d, "ld.so.conf")], check=True)
    # character devices 1:3 (like /dev/null): they open and swallow writes
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "fake0"):
        os.mknod(os.path.join(dev, name), 0o20666, os.makedev(1, 3))
        os.chmod(os.path.join(dev, name), 0o666)
    yield FakeDriver(d, lib, cache, dev, cdi)
    shutil.rmtree(d, ignore_errors=True)
