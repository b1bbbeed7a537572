#!/usr/bin/env python3
"""A five-step Dockerfile on Debian, rootless build vs podman build --isolation chroot.

Both start from the same Debian bookworm minbase tree (the test cache,
/var/cache/rootless-tests/debian-bookworm), imported into a fresh store each
round (not timed), so no network is involved:

    FROM debian:bench
    ENV APP=/opt/app
    WORKDIR /opt/app
    COPY src/ ./src/                      (200 small files)
    RUN cp -a /usr/share/doc ./doc && find . | wc -l > count && dpkg -l > packages
    CMD ["cat", "/opt/app/count"]

Contenders (rounds in shuffled order, medians):
  rootless          rootless build (fresh store, base imported)
  rootless-cached   the same build again: every step from the cache
  podman            podman build --isolation chroot --layers (fresh --root)
  podman-cached     the same build again

Stores live on /dev/shm unless --dir is given. Run as root:

    sudo python3 benchmarks/bench_build.py [--rounds 5] [--json] [--user rltest-nosub]

--user runs rootless as that user (setpriv) instead of root; podman stays root.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEBIAN = "/var/cache/rootless-tests/debian-bookworm"
ROOTLESS = os.environ.get("ROOTLESS_BIN", "/opt/rootless-venv/bin/rootless")
PODMAN = ["podman", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
          "--events-backend", "file"]  # fmt: skip
DOCKERFILE = """\
FROM {base}
ENV APP=/opt/app
WORKDIR /opt/app
COPY src/ ./src/
RUN cp -a /usr/share/doc ./doc && find . | wc -l > count && dpkg -l > packages
CMD ["cat", "/opt/app/count"]
"""


def sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(argv, capture_output=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{os.path.basename(argv[0])} {' '.join(argv[1:3])}... failed: "
                           f"{err[-1] if err else proc.returncode}")
    return proc  # type: ignore[no-any-return]


def timed(argv: list[str], **kw: object) -> float:
    start = time.monotonic()
    sh(argv, **kw)
    return time.monotonic() - start


def prefix(user: str | None) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] if user else []


def make_context(top: str, base: str, user: str | None) -> str:
    ctx = os.path.join(top, f"ctx-{base.replace(':', '-')}")
    os.makedirs(os.path.join(ctx, "src"))
    for i in range(200):
        with open(os.path.join(ctx, "src", f"file{i:03d}.txt"), "w") as f:
            f.write(f"file {i}\n" * 50)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(base=base))
    if user:
        sh(["chown", "-R", f"{user}:{user}", ctx])
    return ctx


def rootless_round(top: str, tarball: str, user: str | None) -> tuple[float, float]:
    work = tempfile.mkdtemp(prefix="rl-", dir=top)
    os.chmod(work, 0o755)
    env = {**os.environ, "ROOTLESS_ROOT": f"{work}/store", "ROOTLESS_RUNROOT": f"{work}/run"}
    if user:
        sh(["chown", user, work])
        env["HOME"] = work
    p = prefix(user)
    sh([*p, ROOTLESS, "import", tarball, "debian:bench"], env=env)
    ctx = make_context(work, "debian:bench", user)
    cold = timed([*p, ROOTLESS, "build", "-q", "-t", "bench:1", ctx], env=env)
    warm = timed([*p, ROOTLESS, "build", "-q", "-t", "bench:1", ctx], env=env)
    out = sh([*p, ROOTLESS, "run", "--rm", "bench:1"], env=env).stdout.decode().strip()
    assert int(out) > 200, out
    shutil.rmtree(work, ignore_errors=True)
    return cold, warm


def podman_round(top: str, tarball: str) -> tuple[float, float]:
    work = tempfile.mkdtemp(prefix="pm-", dir=top)
    pm = [*PODMAN, "--root", f"{work}/root", "--runroot", f"{work}/run"]
    sh([*pm, "import", tarball, "localhost/debian:bench"])
    ctx = make_context(work, "localhost/debian:bench", None)
    cold = timed([*pm, "build", "--isolation", "chroot", "--layers", "-q", "-t", "bench:1", ctx])
    warm = timed([*pm, "build", "--isolation", "chroot", "--layers", "-q", "-t", "bench:1", ctx])
    subprocess.run([*pm, "rmi", "-a", "-f"], capture_output=True, check=False)
    shutil.rmtree(work, ignore_errors=True)
    return cold, warm


def debian_tarball(top: str) -> str:
    if not os.path.isdir(os.path.join(DEBIAN, "usr", "bin")):
        raise RuntimeError(f"{DEBIAN} is missing: run the acceptance tests once (they debootstrap it)")
    tarball = os.path.join(top, "debian.tar")
    sh(["tar", "-C", DEBIAN, "-cf", tarball, "."])
    os.chmod(tarball, 0o644)
    return tarball


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--user", default=None, help="run rootless as this user (e.g. rltest-nosub)")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="rl-bench-build-", dir=args.dir)
    os.chmod(top, 0o755)
    results: dict[str, list[float]] = {"rootless": [], "rootless-cached": [], "podman": [], "podman-cached": []}
    try:
        tarball = debian_tarball(top)
        for _ in range(args.rounds):
            order = ["rootless"] + ([] if args.no_podman else ["podman"])
            random.shuffle(order)
            for who in order:
                cold, warm = rootless_round(top, tarball, args.user) if who == "rootless" else podman_round(top, tarball)
                results[who].append(cold)
                results[who + "-cached"].append(warm)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in results.items() if v}
    if args.json:
        print(json.dumps({"medians_s": medians, "runs": results}, indent=2))
        return
    print(f"{'contender':<18}{'median':>10}   runs ({args.rounds} rounds, rootless as {args.user or 'root'})")
    for k, v in medians.items():
        print(f"{k:<18}{v:>9.3f}s   " + " ".join(f"{x:.3f}" for x in results[k]))


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as exc:
        sys.exit(f"bench_build: {exc}")
