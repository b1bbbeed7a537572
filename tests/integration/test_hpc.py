"""HPC: job scripts, a real Slurm, MPI, GPUs (fake driver), environment policy, --timings.

Slurm, munge, OpenMPI and the fake NVIDIA driver are started or built by the session
fixtures in hpc_fixtures.py. Every Slurm command runs as the test identity itself
(`setpriv ... srun`), as a user would in a job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from helpers import ROOTLESS_BIN, TEST_TMPDIR, require
from helpers.checks import ok, one_error_line
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push
from helpers.users import proc_argv
from hpc_fixtures import build_fake_driver, debian_tree, openmpi_tree, start_slurm

pytestmark = [pytest.mark.needs_userns, pytest.mark.timeout(600)]

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "hpc.md")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def slurm():
    yield from start_slurm()


@pytest.fixture(scope="session")
def fake_nvidia():
    yield from build_fake_driver()


@pytest.fixture(scope="session")
def debian():
    """The shared (root-owned) Debian tree, with the mount point --gpus needs made in
    advance: users other than its owner cannot create folders in it."""
    tree = debian_tree()
    os.makedirs(os.path.join(tree, "usr", "local", "nvidia"), exist_ok=True)
    return tree


@pytest.fixture(scope="session")
def hpc_image(registry, busybox_rootfs, tmp_path_factory):
    layout = Layout(tmp_path_factory.mktemp("hpc-image"))
    top = layer_tar([TarEntry("etc/motd", data=b"hpc\n")])
    img = layout.image([(gnu_tar_layer(busybox_rootfs), "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/hpc-busybox")
    push(layout, "latest", ref)
    return ref


@pytest.fixture(scope="session")
def bin_dir():
    """A PATH folder where `rootless` is the CLI under test (job scripts call it by name)."""
    d = tempfile.mkdtemp(prefix="rl-bin-", dir=TEST_TMPDIR)
    os.chmod(d, 0o755)
    os.symlink(ROOTLESS_BIN, os.path.join(d, "rootless"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_user(cli, argv, env=None, timeout=120, **kw):
    """Run a host command (srun, sbatch, mpirun...) as the test identity."""
    return subprocess.run(cli.prefix() + list(argv), env=cli.environ(env), cwd=cli.workdir,
                          capture_output=True, text=True, timeout=timeout, check=False, **kw)  # fmt: skip


def no_leftovers(cli, within=3.0):
    deadline = time.time() + within
    while cli.leftover_pids() and time.time() < deadline:
        time.sleep(0.05)
    left = cli.leftover_pids()
    info = {p: proc_argv(p) for p in left}
    assert not left, f"processes left behind: {info}"


# ---------------------------------------------------------------- job scripts


def test_job_script_needs_no_tty_no_xdg_and_leaves_nothing(cli, hpc_image):
    env = {"XDG_RUNTIME_DIR": None, "DBUS_SESSION_BUS_ADDRESS": None, "TERM": None}
    proc = cli.run("run", "--rm", hpc_image, "sh", "-c", "tty || true; echo done", env=env)
    assert ok(proc).splitlines() == ["not a tty", "done"]
    no_leftovers(cli)
    proc = cli.run("run", "--rm", "--rootfs", cli.rootfs(), "sh", "-c", "exit 7", env=env)
    assert proc.returncode == 7
    no_leftovers(cli)


def test_env_host_policy(cli, busybox_rootfs):
    env = {"MYJOB_X": "1", "LD_PRELOAD": "/nonexistent.so", "LD_LIBRARY_PATH": "/host/lib",
           "XDG_RUNTIME_DIR": "/run/user/1", "TMPDIR": "/host/tmp", "PATH": "/host/bin:/usr/bin:/bin"}  # fmt: skip
    out = ok(cli.run("run", "--rm", "--env-host", "--rootfs", busybox_rootfs, "env", env=env))
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert got["MYJOB_X"] == "1" and got["USER"] == cli.user
    for denied in ("LD_PRELOAD", "LD_LIBRARY_PATH", "XDG_RUNTIME_DIR", "TMPDIR", "ROOTLESS_ROOT"):
        assert denied not in got, out
    assert got["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # -e wins over the host; an explicit -e 'LD_*' is allowed
    out = ok(cli.run("run", "--rm", "--env-host", "-e", "MYJOB_X=2", "-e", "LD_*", "--rootfs",
                     busybox_rootfs, "env", env=env))  # fmt: skip
    assert "MYJOB_X=2" in out.splitlines() and "LD_LIBRARY_PATH=/host/lib" in out.splitlines()


def test_env_globs(cli, busybox_rootfs):
    env = {"SLURM_JOB_ID": "77", "SLURM_PROCID": "3", "SLURMX": "no", "PMIX_RANK": "3"}
    out = ok(cli.run("run", "--rm", "-e", "SLURM_*", "-e", "PMI?_RANK", "-e", "NOPE_*", "--rootfs",
                     busybox_rootfs, "env", env=env))  # fmt: skip
    lines = out.splitlines()
    assert "SLURM_JOB_ID=77" in lines and "SLURM_PROCID=3" in lines and "PMIX_RANK=3" in lines
    assert not any(x.startswith(("SLURMX=", "NOPE_")) for x in lines)


def test_home_and_default_workdir(cli):
    busybox_rootfs = cli.rootfs()  # mount points are made in it
    home = cli.mkdir("home")
    work = os.path.join(home, "project")
    os.mkdir(work)
    os.chown(work, cli.uid, cli.gid)
    env = {"HOME": home}
    out = ok(cli.run("run", "--rm", "--home", "--rootfs", busybox_rootfs, "sh", "-c",
                     'echo $HOME; pwd; echo hi > "$HOME/written"', env=env, cwd=work))  # fmt: skip
    assert out.splitlines() == [home, work]
    with open(os.path.join(home, "written")) as f:
        assert f.read() == "hi\n"
    # the cwd bound at the same path with -v is the default workdir too; -w still wins
    out = ok(cli.run("run", "--rm", "-v", f"{work}:{work}", "--rootfs", busybox_rootfs, "pwd", cwd=work))
    assert out.strip() == work
    out = ok(cli.run("run", "--rm", "-v", f"{work}:{work}", "-w", "/tmp", "--rootfs", busybox_rootfs,
                     "pwd", cwd=work))  # fmt: skip
    assert out.strip() == "/tmp"
    # bound elsewhere: docker's default (/)
    out = ok(cli.run("run", "--rm", "-v", f"{work}:/data", "--rootfs", busybox_rootfs, "pwd", cwd=work))
    assert out.strip() == "/"


def test_env_options_persist_in_containers(cli, busybox_rootfs):
    env = {"SLURM_JOB_ID": "99"}
    cid = ok(cli.run("create", "-e", "SLURM_*", "--env-host", "--rootfs", busybox_rootfs, "env",
                     env=env)).strip()  # fmt: skip
    # started later from an environment without the variable: the values were kept
    out = ok(cli.run("start", "-a", cid, env={"SLURM_JOB_ID": None}))
    assert "SLURM_JOB_ID=99" in out.splitlines()
    ok(cli.run("rm", cid))


def test_timings(cli, hpc_image, busybox_rootfs):
    proc = cli.run("run", "--rm", "--timings", hpc_image, "true")
    ok(proc)
    phases = re.findall(r"^  (\S+(?: \S+)?) +([0-9.]+)$", proc.stderr, re.M)
    names = [n for n, _ in phases]
    assert names == ["image resolve", "rootfs setup", "namespace setup", "exec", "run", "total"], proc.stderr
    assert all(float(v) >= 0 for _, v in phases)
    proc = cli.run("run", "--rm", "--timings", "--rootfs", busybox_rootfs, "true")
    names = re.findall(r"^  (\S+(?: \S+)?) +[0-9.]+$", ok(proc) + proc.stderr, re.M)
    assert names == ["rootfs setup", "namespace setup", "exec", "run", "total"], proc.stderr
    # off: nothing printed
    proc = cli.run("run", "--rm", "--rootfs", busybox_rootfs, "true")
    assert proc.stderr == ""


# ---------------------------------------------------------------- Slurm


def srun(cli, slurm, *args, env=None, timeout=180):
    return as_user(cli, ["srun", *args], env={**slurm.env(), **(env or {})}, timeout=timeout)


def test_srun_four_tasks_see_their_slurm_variables(cli, slurm, hpc_image):
    ok(cli.run("pull", hpc_image))
    proc = srun(cli, slurm, "-n", "4", ROOTLESS_BIN, "run", "--rm", "-e", "SLURM_*", hpc_image,
                "sh", "-c", "echo $SLURM_PROCID $SLURM_NTASKS $SLURM_JOB_ID $SLURM_STEP_ID $(id -u)")
    lines = sorted(ok(proc).splitlines())
    assert [line.split()[0] for line in lines] == ["0", "1", "2", "3"], proc.stdout
    assert {tuple(line.split()[1:]) for line in lines} == {(lines[0].split()[1], *lines[0].split()[2:])}
    assert lines[0].split()[1] == "4"
    no_leftovers(cli)


def test_srun_sharens_tasks_share_one_container(cli, slurm, hpc_image):
    """--sharens under srun: the tasks of a step on one node join one container, so they
    see each other's processes and one /dev/shm (a barrier there only passes if shared)."""
    ok(cli.run("pull", hpc_image))
    script = ("touch /dev/shm/task$SLURM_PROCID; i=0; "
              "while [ $(ls /dev/shm | grep -c task) -lt 3 ]; do i=$((i+1)); [ $i -gt 300 ] && exit 9; sleep 0.1; done; "
              "echo $SLURM_PROCID $(readlink /proc/1/ns/pid) $(ls /dev/shm | grep -c task)")
    proc = srun(cli, slurm, "-n", "3", ROOTLESS_BIN, "run", "--rm", "--sharens", "-e", "SLURM_*", hpc_image,
                "sh", "-c", script)
    lines = sorted(ok(proc).splitlines())
    assert [line.split()[0] for line in lines] == ["0", "1", "2"], proc.stdout + proc.stderr
    assert len({line.split()[1] for line in lines}) == 1, lines  # one PID namespace
    no_leftovers(cli)


def test_srun_concurrent_cold_start_pulls_once(cli, slurm, registry, busybox_rootfs, tmp_path):
    repo = f"test/hpc-once-{uuid.uuid4().hex[:8]}"
    layout = Layout(tmp_path / "img")
    img = layout.image([(gnu_tar_layer(busybox_rootfs), "gzip"),
                        (layer_tar([TarEntry("etc/motd", data=b"x\n")]), "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref(repo)
    push(layout, "latest", ref)
    proc = srun(cli, slurm, "-n", "4", ROOTLESS_BIN, "run", "--rm", "-e", "SLURM_PROCID", ref,
                "sh", "-c", "echo $SLURM_PROCID")  # fmt: skip
    assert sorted(ok(proc).split()) == ["0", "1", "2", "3"]
    with open(os.path.join(registry.storage, "registry.log"), errors="replace") as f:
        gets = re.findall(rf'"GET /v2/{re.escape(repo)}/blobs/(sha256:[0-9a-f]+) HTTP[^"]*" 200', f.read())
    assert gets, "no blob was fetched?"
    assert len(gets) == len(set(gets)), f"a blob was downloaded more than once: {gets}"
    assert len(set(gets)) == 3  # two layers and the config


def test_srun_exit_codes_and_signals(cli, slurm, hpc_image):
    ok(cli.run("pull", hpc_image))
    proc = srun(cli, slurm, ROOTLESS_BIN, "run", "--rm", hpc_image, "sh", "-c", "exit 3")
    assert proc.returncode == 3, proc.stderr
    proc = srun(cli, slurm, ROOTLESS_BIN, "run", "--rm", hpc_image, "sh", "-c",
                'sh -c "kill -KILL \\$\\$"; exit $?')  # fmt: skip
    assert proc.returncode == 137, proc.stderr
    proc = srun(cli, slurm, ROOTLESS_BIN, "run", "--rm", hpc_image, "nonexistent-cmd")
    assert proc.returncode == 127, proc.stderr
    no_leftovers(cli)


@pytest.mark.parametrize("how", ["image", "rootfs"])
def test_scancel_stops_the_containers(cli, slurm, hpc_image, how):
    ok(cli.run("pull", hpc_image))
    name = f"rl-scancel-{uuid.uuid4().hex[:8]}"
    what = [hpc_image] if how == "image" else ["--rootfs", cli.rootfs()]
    # PID 1 of the container ignores SIGTERM: the CLI kills it ROOTLESS_KILL_GRACE later
    p = subprocess.Popen(cli.prefix() + ["srun", "-J", name, "-n", "2", ROOTLESS_BIN, "run", "--rm",
                                         *what, "sleep", "1000"],
                         env=cli.environ({**slurm.env(), "ROOTLESS_KILL_GRACE": "2"}),
                         cwd=cli.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        sleeping = [pid for pid in cli.leftover_pids()
                    if proc_argv(pid)[:1] == [b"sleep"]]
        if len(sleeping) == 2:
            break
        time.sleep(0.2)
    assert len(sleeping) == 2, "the containers did not start"
    t0 = time.time()
    subprocess.run(["scancel", "-n", name], env={**os.environ, **slurm.env()}, check=True)
    p.communicate(timeout=60)
    no_leftovers(cli, within=15)
    assert time.time() - t0 < 25  # before Slurm's KillWait (30 s) had to SIGKILL anything


def sbatch_example() -> str:
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- sbatch-example -->\s*```bash\n(.*?)```", text, re.S)
    assert m, "docs/hpc.md lost its sbatch example"
    return m.group(1)


def test_sbatch_example_from_the_docs(cli, slurm, hpc_image, bin_dir):
    job = cli.mkdir("job")
    script = os.path.join(job, "job.sh")
    with open(script, "w") as f:
        f.write(sbatch_example())
    env = {**slurm.env(), "IMAGE": hpc_image, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = as_user(cli, ["sbatch", "--wait", "--chdir", job, script], env=env, timeout=300)
    ok(proc)
    jobid = re.search(r"Submitted batch job (\d+)", proc.stdout).group(1)
    with open(os.path.join(job, f"rootless-example-{jobid}.out")) as f:
        out = f.read()
    tasks = sorted(re.findall(r"^task (\d) of 4 on \S+ in (\S+)$", out, re.M))
    assert tasks == [(str(i), job) for i in range(4)], out
    no_leftovers(cli)


# ---------------------------------------------------------------- MPI

PINGPONG_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int rank, size, n = 0;
    char host[256];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    for (int i = 0; i < 100; i++) {
        if (rank == 0) {
            MPI_Send(&i, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(&n, 1, MPI_INT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&n, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            n += 1000;
            MPI_Send(&n, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
        }
    }
    printf("rank %d of %d on %s: last %d uid %d\n", rank, size, host, n, (int)getuid());
    MPI_Finalize();
    return 0;
}
"""


@pytest.fixture(scope="session")
def mpi_tree():
    require(shutil.which("mpicc") and shutil.which("mpirun"),
            "needs openmpi-bin and libopenmpi-dev (scripts/setup-host.sh)")
    return openmpi_tree()


def _mpicc(cli, directory: str, name: str, source: str) -> str:  # type: ignore[no-untyped-def]
    """Compile an MPI program into a fresh directory of the test's user."""
    work = cli.mkdir(directory)
    src = os.path.join(work, name + ".c")
    with open(src, "w") as f:
        f.write(source)
    binary = os.path.join(work, name)
    subprocess.run(["mpicc", "-O2", "-o", binary, src], check=True)
    return binary


@pytest.mark.timeout(1200)
def test_mpirun_pingpong_in_containers(cli, mpi_tree):
    binary = _mpicc(cli, "mpi", "pingpong", PINGPONG_C)
    # The hybrid model: the host's mpirun starts one container per rank; ranks reach
    # their orted over the host network (PMIx over TCP), share /dev/shm and /tmp.
    # Without --sharens each rank is PID 1 of its own PID namespace, so vader (shared
    # memory) cannot work between them (docs/hpc.md): TCP over the host network does.
    argv = ["mpirun", "-np", "2", "--oversubscribe", "--mca", "btl", "self,tcp",
            ROOTLESS_BIN, "run", "--rm", "--userns=keep-id", "--env-host", "-e", "OMPI_*", "-e", "PMIX_*",
            "-v", "/dev/shm:/dev/shm", "-v", f"{TEST_TMPDIR}:{TEST_TMPDIR}",
            "--rootfs", mpi_tree, binary]  # fmt: skip
    if cli.name == "root":
        argv[1:1] = ["--allow-run-as-root"]
    proc = as_user(cli, argv, env={"TMPDIR": TEST_TMPDIR, "OMPI_MCA_plm_rsh_agent": ""}, timeout=120)
    out = ok(proc)
    ranks = sorted(re.findall(r"^rank (\d) of 2 on \S+: last (\d+)", out, re.M))
    assert ranks == [("0", "1099"), ("1", "1099")], out + proc.stderr
    no_leftovers(cli)


SHM_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int rank, me, peer = 0;
    const int n = 4 << 20;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    me = (int)getpid();
    MPI_Sendrecv(&me, 1, MPI_INT, 1 - rank, 1, &peer, 1, MPI_INT, 1 - rank, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    char *buf = malloc(n);
    long sum = 0;
    for (int round = 0; round < 10; round++) {
        if (rank == 0) {
            for (int i = 0; i < n; i++) buf[i] = (char)(i * 7 + round);
            MPI_Send(buf, n, MPI_CHAR, 1, 0, MPI_COMM_WORLD);
        } else {
            MPI_Recv(buf, n, MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (int i = 0; i < n; i++) sum += (unsigned char)buf[i];
        }
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", peer);
    printf("rank %d sees peer %d: %d sum %ld\n", rank, peer, access(path, F_OK) == 0, sum);
    MPI_Finalize();
    return 0;
}
"""


@pytest.mark.timeout(600)
def test_mpirun_shared_memory_with_sharens(cli, mpi_tree):
    """--sharens: both ranks join one container, so vader (shared memory) with CMA
    (process_vm_readv, single copy) works, with no TCP at all."""
    binary = _mpicc(cli, "mpi-shm", "shm", SHM_C)
    argv = ["mpirun", "-np", "2", "--oversubscribe", "--mca", "btl", "self,vader",
            "--mca", "btl_vader_single_copy_mechanism", "cma",
            ROOTLESS_BIN, "run", "--rm", "--sharens", "--userns=keep-id", "--env-host", "-e", "OMPI_*",
            "-e", "PMIX_*", "-v", f"{TEST_TMPDIR}:{TEST_TMPDIR}", "--rootfs", mpi_tree, binary]  # fmt: skip
    if cli.name == "root":
        argv[1:1] = ["--allow-run-as-root"]
    proc = as_user(cli, argv, env={"TMPDIR": TEST_TMPDIR, "OMPI_MCA_plm_rsh_agent": ""}, timeout=120)
    out = ok(proc)
    expect = sum(((i * 7 + r) & 255) for r in range(10) for i in range(0, 4 << 20))
    assert re.search(r"^rank 0 sees peer \d+: 1 sum 0$", out, re.M), out
    assert re.search(rf"^rank 1 sees peer \d+: 1 sum {expect}$", out, re.M), out
    no_leftovers(cli)


def test_sharens_late_rank_joins_after_the_leaders_command(cli, busybox_rootfs):
    """A rank that arrives after the first rank's command has ended still joins the
    shared container, through another rank's process (PID 1 lingers, but is not
    joinable itself without CAP_SYS_PTRACE)."""
    env = {"ROOTLESS_SHARENS_KEY": "late-" + uuid.uuid4().hex[:6]}

    def start(script):
        return subprocess.Popen(cli.prefix() + [ROOTLESS_BIN, "run", "--rm", "--sharens", "--rootfs",
                                                busybox_rootfs, "sh", "-c", script],
                                env=cli.environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    leader = start("sleep 0.5")
    time.sleep(0.25)
    second = start("sleep 2.5")
    time.sleep(1.3)  # the leader's command is gone; the second rank still runs
    late = cli.run("run", "--rm", "--sharens", "--rootfs", busybox_rootfs, "sh", "-c",
                   "ps -o args | grep -c '^sleep 2.5'", env=env)
    assert late.returncode == 0 and late.stdout.split() == ["1"], (late.stdout, late.stderr)
    for p in (second, leader):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
    no_leftovers(cli)


def test_sharens_needs_a_job_and_rm(cli, busybox_rootfs):
    env = {"ROOTLESS_SHARENS_KEY": ""}
    line = one_error_line(cli.run("run", "--rm", "--sharens", "--rootfs", busybox_rootfs, "true", env=env))
    assert "ROOTLESS_SHARENS_KEY" in line
    line = one_error_line(cli.run("run", "-d", "--sharens", "--rootfs", busybox_rootfs, "true",
                                  env={"ROOTLESS_SHARENS_KEY": "k"}))
    assert "--rm" in line


def test_sharens_key_joins_and_last_one_out_cleans_up(cli, busybox_rootfs):
    """Two runs with the same key share a PID namespace; the leader returns only after
    the follower; a different rootfs under the same key is refused."""
    env = {"ROOTLESS_SHARENS_KEY": "job-" + uuid.uuid4().hex[:6]}
    leader = subprocess.Popen(cli.prefix() + [ROOTLESS_BIN, "run", "--rm", "--sharens", "--rootfs", busybox_rootfs,
                                             "sh", "-c", "echo leader $$; sleep 1"],
                              env=cli.environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    follower = cli.run("run", "--rm", "--sharens", "--rootfs", busybox_rootfs, "sh", "-c",
                       "echo follower $$; ls /proc | grep -c '^[0-9]'; sleep 1.5; exit 4", env=env)
    assert follower.returncode == 4, follower.stderr
    pid, count = follower.stdout.split("\n")[0].split()[1], follower.stdout.split()[2]
    assert pid != "1" and int(count) >= 3  # init, the leader's sh and sleep, and us
    out, err = leader.communicate(timeout=30)
    assert leader.returncode == 0, err
    assert out.strip() == "leader 2"
    no_leftovers(cli)
    other = cli.mkdir("other-rootfs")
    shutil.copytree(busybox_rootfs, other, dirs_exist_ok=True, symlinks=True)
    leader = subprocess.Popen(cli.prefix() + [ROOTLESS_BIN, "run", "--rm", "--sharens", "--rootfs", busybox_rootfs,
                                             "sleep", "2"], env=cli.environ(env))
    time.sleep(0.7)
    line = one_error_line(cli.run("run", "--rm", "--sharens", "--rootfs", other, "true", env=env))
    assert "same image or rootfs" in line or "runs" in line
    assert leader.wait(timeout=30) == 0


# ---------------------------------------------------------------- GPUs


def test_gpus_all_fake_driver(cli, debian, fake_nvidia):
    proc = cli.run("run", "--rm", "--gpus", "all", "--rootfs", debian, "sh", "-c",
                   "nvidia-smi; echo LD=$LD_LIBRARY_PATH; echo NV=$NVIDIA_VISIBLE_DEVICES; "
                   "ls /usr/local/nvidia/lib64", env=fake_nvidia.env())  # fmt: skip
    out = ok(proc)
    assert "GPU: Fake GPU 9000 (dep 42)" in out
    for node in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        assert f"device /dev/{node} open" in out, out
    assert "LD=/usr/local/nvidia/lib64" in out and "NV=0,1" in out
    # the DT_NEEDED closure came along
    assert "libnvidia-fake-dep.so" in out and "libnvidia-ml.so.1" in out


@pytest.mark.parametrize("spec,nodes", [("1", ["nvidia0"]), ("device=1", ["nvidia1"]),
                                        ('"device=0,1"', ["nvidia0", "nvidia1"])])
def test_gpus_selection(cli, debian, fake_nvidia, spec, nodes):
    out = ok(cli.run("run", "--rm", "--gpus", spec, "--rootfs", debian, "sh", "-c",
                     "ls /dev | grep -E '^nvidia[0-9]+$'", env=fake_nvidia.env()))  # fmt: skip
    assert out.split() == nodes


def test_gpus_errors(cli, debian, fake_nvidia, busybox_rootfs):
    line = one_error_line(cli.run("run", "--rm", "--gpus", "device=5", "--rootfs", debian, "true",
                                  env=fake_nvidia.env()))  # fmt: skip
    assert "no GPU 5" in line
    one_error_line(cli.run("run", "--rm", "--gpus", "lots", "--rootfs", busybox_rootfs, "true"))
    env = {**fake_nvidia.env(), "ROOTLESS_NVIDIA_DEV": cli.mkdir("nodev")}
    assert "no NVIDIA GPU" in one_error_line(
        cli.run("run", "--rm", "--gpus", "all", "--rootfs", busybox_rootfs, "true", env=env))


def test_gpus_in_a_persistent_container(cli, debian, fake_nvidia):
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    ok(cli.run("create", "--name", name, "--gpus", "all", "--rootfs", debian, "nvidia-smi",
               env=fake_nvidia.env()))  # fmt: skip
    out = ok(cli.run("start", "-a", name, env=fake_nvidia.env()))
    assert "GPU: Fake GPU 9000" in out
    ok(cli.run("rm", name))


def test_device_option(cli, busybox_rootfs, fake_nvidia):
    node = os.path.join(fake_nvidia.dev, "fake0")
    out = ok(cli.run("run", "--rm", "--device", node, "--device", f"{node}:/dev/other:r",
                     "--rootfs", busybox_rootfs, "sh", "-c",
                     f"ls -l {node} /dev/other; echo x > {node} && echo wrote"))  # fmt: skip
    assert out.count("c") >= 2 and "1,   3" in out and "wrote" in out
    assert "does not exist" in one_error_line(
        cli.run("run", "--rm", "--device", "/dev/nonexistent-xyz", "--rootfs", busybox_rootfs, "true"))
    assert "not a device" in one_error_line(
        cli.run("run", "--rm", "--device", "/etc/passwd", "--rootfs", busybox_rootfs, "true"))
    one_error_line(cli.run("run", "--rm", "--device", f"{node}:/dev/x:rwz", "--rootfs", busybox_rootfs, "true"))


def test_cdi_spec(cli, fake_nvidia):
    busybox_rootfs = cli.rootfs()  # mount points are made in it
    cdi = cli.mkdir("cdi")
    spec = {
        "cdiVersion": "0.6.0",
        "kind": "example.com/fake",
        "devices": [{"name": "dev0", "containerEdits": {
            "deviceNodes": [{"path": "/dev/fakecdi0", "hostPath": os.path.join(fake_nvidia.dev, "fake0")}],
            "env": ["FAKE_DEV=dev0"]}}],
        "containerEdits": {
            "env": ["FAKE_CDI=1"],
            "mounts": [{"hostPath": fake_nvidia.lib, "containerPath": "/opt/fake/lib",
                        "options": ["ro", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                       "args": ["nvidia-ctk", "hook", "create-symlinks", "--link",
                                "/opt/fake/lib/libnvidia-ml.so.1::/opt/libml.so"]}],
        },
    }  # fmt: skip
    with open(os.path.join(cdi, "fake.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(cdi, "ignored.yaml"), "w") as f:
        f.write("kind: example.com/yaml\n")
    env = {"ROOTLESS_CDI_DIRS": cdi}
    out = ok(cli.run("run", "--rm", "--device", "example.com/fake=dev0", "--rootfs", busybox_rootfs,
                     "sh", "-c", "ls -l /dev/fakecdi0 /opt/fake/lib/libnvidia-ml.so.1; readlink /opt/libml.so; "
                     "echo $FAKE_CDI $FAKE_DEV; touch /opt/fake/lib/x || echo ro", env=env))  # fmt: skip
    assert "FAKE_CDI" not in out and "1 dev0" in out and "/opt/fake/lib/libnvidia-ml.so.1\n" in out
    assert out.rstrip().endswith("ro")
    assert "unknown device" in one_error_line(
        cli.run("run", "--rm", "--device", "example.com/fake=nope", "--rootfs", busybox_rootfs, "true", env=env))
    assert "no spec" in one_error_line(
        cli.run("run", "--rm", "--device", "example.com/yaml=x", "--rootfs", busybox_rootfs, "true", env=env))
    # --gpus uses an nvidia.com/gpu spec when there is one
    gpu_spec = {"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu", "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [
            {"path": "/dev/nvidia0", "hostPath": os.path.join(fake_nvidia.dev, "nvidia0")}]}}],
        "containerEdits": {"env": ["FROM_CDI=yes"]}}  # fmt: skip
    with open(os.path.join(cdi, "nvidia.json"), "w") as f:
        json.dump(gpu_spec, f)
    out = ok(cli.run("run", "--rm", "--gpus", "all", "--rootfs", busybox_rootfs, "sh", "-c",
                     "ls /dev/nvidia0; echo $FROM_CDI", env=env))  # fmt: skip
    assert out.split() == ["/dev/nvidia0", "yes"]
