#!/usr/bin/env python3
"""Scale on one node: 100 containers started at once, and 16 `srun` tasks cold and warm.

  sudo python3 benchmarks/bench_scale.py [--count 100] [--tasks 16] [--as-user rltest-sub] [--json]

Measured (as --as-user, through setpriv; the harness needs root for Slurm and the registry):
  * foreground: COUNT x `rootless run --rm --rootfs BUSYBOX true` launched together: wall
    time until the last exits, the peak of the host's used memory above the idle
    baseline (MemTotal - MemAvailable, sampled every 5 ms), and the peak summed RSS of
    the launched process trees (RssPeak, as compare.py's scale workload measures it);
  * detached: COUNT x `rootless run -d IMAGE sleep 60` launched together: wall time until
    every `run -d` returned, the summed RSS (and PSS) of the COUNT monitors, and the host
    memory used by the whole set (monitors + containers) once all run;
  * Slurm: `srun -n TASKS rootless run --rm IMAGE true` with an empty store (cold: the
    image is pulled once and unpacked once, the other tasks wait on the store locks) and
    again with the image present (warm).
The Slurm, registry and image fixtures are the test suite's (tests/integration/hpc_fixtures.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "integration")]
VENV = os.environ.get("ROOTLESS_VENV", "/opt/rootless-venv")
ROOTLESS = os.environ.get("ROOTLESS_BIN") or f"{VENV}/bin/rootless"


def used_kib() -> int:
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            info[k] = int(v.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


class PeakMemory:
    def __init__(self) -> None:
        self.base = used_kib()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, used_kib())
            time.sleep(0.005)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: processes that daemonize (podman's conmon) stay our
    descendants, so RssPeak still counts them."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class RssPeak:
    """The peak, over time, of the summed RSS of every process below this one (`root`):
    no cgroup needed. Every `interval` s the tree is walked through
    /proc/PID/task/TID/children and each member's VmRSS summed (shared pages count in
    each process; a process shorter than the interval can be missed). Call
    become_subreaper() first so that daemonized helpers stay below."""

    def __init__(self, interval: float = 0.01, root: int | None = None) -> None:
        self.interval = interval
        self.root = root if root is not None else os.getpid()
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    out += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return out

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def scan(self) -> int:
        total, todo, seen = 0, self._children(self.root), set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += self._rss_kib(pid)
            todo += self._children(pid)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.scan())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def launch_together(argvs: list[list[str]], env: dict[str, str], cwd: str) -> float:
    """Start every argv at once, wait for all; the wall time. A failure raises
    RuntimeError with the first failing process's last stderr line."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(a, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for a in argvs]  # fmt: skip
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=900)
        if p.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            errors.append(f"exit {p.returncode}: {lines[-1] if lines else ''}")
    wall = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(argvs)} failed; {errors[0]}")
    return wall


class User:
    def __init__(self, name: str, workdir: str) -> None:
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.dir = workdir
        os.chown(workdir, self.uid, self.gid)
        self.marker = "bench-" + uuid.uuid4().hex[:8]
        self.env = {"HOME": workdir, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                    "ROOTLESS_ROOT": f"{workdir}/store", "ROOTLESS_RUNROOT": f"{workdir}/run",
                    "ROOTLESS_TEST_ID": self.marker}  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        if self.uid == 0:
            return list(args)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *args]

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), env={**self.env, **(env or {})}, cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        p = self.popen(*args, env=env)
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{args} failed ({p.returncode}): {err.decode()[-2000:]}")
        return out.decode()

    def wipe_store(self) -> None:
        subprocess.run(self.argv("rm", "-rf", f"{self.dir}/store", f"{self.dir}/run"), check=True)


def together(user: User, argvs: list[list[str]]) -> tuple[float, list[bytes]]:
    t0 = time.monotonic()
    procs = [user.popen(*a) for a in argvs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"a run failed ({p.returncode}): {err.decode()[-1000:]}")
        outs.append(out)
    return time.monotonic() - t0, outs


def monitor_memory(marker: str) -> tuple[int, int, int]:
    """(count, summed RSS KiB, summed PSS KiB) of rootless-monitor processes with `marker`."""
    n = rss = pss = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("rootless-monit"):
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"ROOTLESS_TEST_ID={marker}".encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            n += 1
        except OSError:
            continue
    return n, rss, pss


def bench_foreground(user: User, rootfs: str, count: int) -> dict[str, float]:
    become_subreaper()
    with PeakMemory() as mem, RssPeak() as rss:
        wall, _ = together(user, [[ROOTLESS, "run", "--rm", "--rootfs", rootfs, "true"]] * count)
    return {"wall_s": round(wall, 3), "per_container_ms": round(wall / count * 1000, 2),
            "peak_used_mib": round((mem.peak - mem.base) / 1024, 1),
            "peak_rss_sum_mib": round(rss.peak_kib / 1024, 1)}  # fmt: skip


def bench_detached(user: User, image: str, count: int) -> dict[str, float]:
    user.run(ROOTLESS, "pull", "-q", image)
    base = used_kib()
    with PeakMemory() as mem:
        wall, outs = together(user, [[ROOTLESS, "run", "-d", image, "sleep", "60"]] * count)
    time.sleep(1)
    n, rss, pss = monitor_memory(user.marker)
    steady = used_kib() - base
    ids = [o.decode().strip() for o in outs]
    user.run(ROOTLESS, "rm", "-f", *ids)
    return {"wall_s": round(wall, 3), "monitors": n, "monitor_rss_sum_mib": round(rss / 1024, 1),
            "monitor_pss_sum_mib": round(pss / 1024, 1),
            "monitor_rss_each_kib": round(rss / max(n, 1)),
            "used_while_running_mib": round(steady / 1024, 1),
            "peak_used_mib": round((mem.peak - base) / 1024, 1)}  # fmt: skip


def bench_srun(user: User, slurm_env: dict[str, str], image: str, tasks: int) -> dict[str, float]:
    user.wipe_store()
    res = {}
    for label in ("cold", "warm", "warm2"):
        t0 = time.monotonic()
        user.run("srun", "-n", str(tasks), ROOTLESS, "run", "--rm", image, "true", env=slurm_env)
        res[f"{label}_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    user.run("srun", "-n", str(tasks), "true", env=slurm_env)
    res["srun_true_s"] = round(time.monotonic() - t0, 3)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--as-user", default="rltest-sub")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_scale: run as root (it starts Slurm and a registry)", file=sys.stderr)
        return 2
    import conftest  # tests/conftest.py: the registry fixture's implementation
    from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push
    from helpers.rootfs import make_rootfs
    from hpc_fixtures import start_slurm

    tmp = tempfile.mkdtemp(prefix="rl-bench-scale-", dir="/tmp")
    os.chmod(tmp, 0o755)
    rootfs = make_rootfs(os.path.join(tmp, "rootfs"))
    os.mkdir(os.path.join(tmp, "u"))
    user = User(args.as_user, os.path.join(tmp, "u"))
    reg_gen = conftest._start_registry(False)
    slurm_gen = start_slurm()
    try:
        reg = next(reg_gen)
        slurm = next(slurm_gen)
        layout = Layout(os.path.join(tmp, "layout"))
        img = layout.image([(gnu_tar_layer(rootfs), "gzip"),
                            (layer_tar([TarEntry("etc/motd", data=b"scale\n")]), "gzip")],
                           cmd=["/bin/sh"])  # fmt: skip
        layout.tag("latest", img.manifest)
        image = reg.ref("bench/scale")
        push(layout, "latest", image)
        results = {
            "count": args.count, "tasks": args.tasks, "user": args.as_user, "cpus": os.cpu_count(),
            "foreground": bench_foreground(user, rootfs, args.count),
            "detached": bench_detached(user, image, args.count),
            "srun": bench_srun(user, slurm.env(), image, args.tasks),
        }  # fmt: skip
    finally:
        for gen in (slurm_gen, reg_gen):
            gen.close()
        subprocess.run(["rm", "-rf", tmp], check=False)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(f"{k:<12} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
