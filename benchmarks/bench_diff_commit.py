#!/usr/bin/env python3
"""`diff` and `commit` with 10 and with 10,000 changed files: the time must follow
the number of changes, not the size of the image.

The image: a Debian-sized tree (busybox rootfs + copies of the host's
/usr/lib/python3{,.11} and /usr/include, ~15k files, ~240 MB: a Debian base has
~9k files, 120 MB), imported with
`rootless import`. For each N, a container changes N files: N/2 new files in
/data and N/2 existing files rewritten (copied up). Then, medians of several
rounds:
  diff      rootless diff C
  commit    rootless commit C img:N   (pack upper -> gzip blob -> unpack layer ->
            config/manifest/index)
and, to show the image size does not matter, `diff` of a 10-change container
on a small image (busybox only).

Runs as the caller, or as another user with --user (uses setpriv; run as root).
Everything lives under --dir (default /dev/shm). Usage:

    sudo python3 benchmarks/bench_diff_commit.py [--user rltest-sub] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOTLESS = os.environ.get("ROOTLESS_BIN", "/opt/rootless-venv/bin/rootless")
BIG_TREES = ["/usr/lib/python3.11", "/usr/lib/python3", "/usr/include"]
DEBIAN = "/var/cache/rootless-tests/debian-bookworm"  # debootstrapped by the acceptance tests
PODMAN = ["podman", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
          "--events-backend", "file"]  # fmt: skip


def _rootfs_module() -> object:
    spec = importlib.util.spec_from_file_location("rootfs", os.path.join(HERE, "..", "tests", "helpers", "rootfs.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Runner:
    def __init__(self, user: str | None, work: str) -> None:
        self.prefix: list[str] = []
        self.uid, self.gid = os.getuid(), os.getgid()
        if user:
            pw = pwd.getpwnam(user)
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            self.prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]
        self.env = dict(os.environ, ROOTLESS_ROOT=os.path.join(work, "store"),
                        ROOTLESS_RUNROOT=os.path.join(work, "run"))
        if user:
            self.env.update(HOME=work, USER=user, LOGNAME=user)

    def lines(self, *args: str) -> int:
        out = subprocess.run(self.prefix + [ROOTLESS, *args], env=self.env, capture_output=True, text=True,
                             check=False)
        return len(out.stdout.splitlines())

    def __call__(self, *args: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(self.prefix + [ROOTLESS, *args], env=self.env, capture_output=True,
                              text=True, check=False)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            raise RuntimeError(f"rootless {args[0]} failed: {err[-1] if err else proc.returncode}")
        return dt


class Podman:
    """`podman` with a store of its own under `work`, as `user` when given (rootless
    podman, through setpriv); same interface as Runner."""

    def __init__(self, work: str, user: str | None = None) -> None:
        os.makedirs(os.path.join(work, "xdg"), mode=0o700, exist_ok=True)
        prefix: list[str] = []
        self.env = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(work, "xdg"))
        if user:
            pw = pwd.getpwnam(user)
            subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", work], check=True)
            prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]
            self.env.update(HOME=work, USER=user, LOGNAME=user)
        self.argv = [*prefix, *PODMAN, "--root", os.path.join(work, "root"), "--runroot",
                     os.path.join(work, "run")]

    def lines(self, *args: str) -> int:
        out = subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False,
                             env=self.env)
        return len(out.stdout.splitlines())

    def __call__(self, *args: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False,
                              env=self.env)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            raise RuntimeError(f"podman {args[0]} failed: {err[-1] if err else proc.returncode}")
        return dt


def debian_tarball(work: str) -> tuple[str, int]:
    """A tar of the debootstrapped Debian bookworm tree; (path, entries)."""
    if not os.path.isdir(os.path.join(DEBIAN, "usr", "bin")):
        raise RuntimeError(f"{DEBIAN} is missing: run the acceptance tests once (they debootstrap it)")
    tarball = os.path.join(work, "debian.tar")
    subprocess.run(["tar", "-C", DEBIAN, "-cf", tarball, "."], check=True)
    os.chmod(tarball, 0o644)
    return tarball, sum(len(f) + len(d) for _, d, f in os.walk(DEBIAN))


def make_tarball(work: str, big: bool) -> tuple[str, int]:
    rootfs = os.path.join(work, "big-rootfs" if big else "small-rootfs")
    _rootfs_module().make_rootfs(rootfs)  # type: ignore[attr-defined]
    if big:
        for tree in BIG_TREES:
            if os.path.isdir(tree):
                shutil.copytree(tree, rootfs + tree, symlinks=True, dirs_exist_ok=True)
    files = sum(len(f) + len(d) for _, d, f in os.walk(rootfs))
    tarball = rootfs + ".tar"
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
    os.chmod(tarball, 0o644)
    return tarball, files


def change_script(n: int, tree: str = "/usr/include", rewritten: float = 0.5) -> str:
    """A shell script making `n` changes: a share `rewritten` of them appends to
    existing files under `tree` (copy-ups), the rest are new files in /data."""
    old = int(n * rewritten)
    new = n - old
    return (f"mkdir -p /data && cd /data && i=0; while [ $i -lt {new} ]; do echo $i > f$i; i=$((i+1)); done; "
            f"find {tree} -type f | head -n {old} | "
            "while read f; do echo '# changed' >> \"$f\"; done; true")


def median_ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rl-bench-diff-", dir=a.dir)
    os.chmod(work, 0o755)
    try:
        rl = Runner(a.user, work)
        os.chown(work, rl.uid, rl.gid)
        results: dict[str, object] = {}
        for big in (True, False):
            tarball, files = make_tarball(work, big)
            name = "big" if big else "small"
            rl("import", tarball, f"bench-{name}:1")
            results[f"{name}_image_files"] = files
        for n in (10, 10000):
            rl("run", "--name", f"c{n}", "bench-big:1", "sh", "-c", change_script(n))
            results[f"diff_{n}_lines"] = rl.lines("diff", f"c{n}")
            diffs = [rl("diff", f"c{n}") for _ in range(a.rounds)]
            commits = [rl("commit", f"c{n}", f"bench-commit:{n}-{i}") for i in range(max(3, a.rounds // 2))]
            results[f"diff_{n}_ms"] = median_ms(diffs)
            results[f"commit_{n}_ms"] = median_ms(commits)
        rl("run", "--name", "small10", "bench-small:1", "sh", "-c", change_script(10).replace(
            "find /usr/include", "find /etc"))
        results["diff_10_small_image_ms"] = median_ms([rl("diff", "small10") for _ in range(a.rounds)])
        results["version_ms"] = median_ms([rl("version") for _ in range(a.rounds)])
    finally:
        subprocess.run(["rm", "-rf", work], check=False)
        if a.user:  # files of subordinate ids: let the user's own rmi-free cleanup fail quietly
            subprocess.run(["rm", "-rf", work], check=False)
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        for k, v in results.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        sys.exit(f"bench_diff_commit: {exc}")
