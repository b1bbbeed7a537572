#!/usr/bin/env python3
"""rootless next to its peers, every workload in one command.

    sudo /opt/rootless-venv/bin/python benchmarks/compare.py [--rounds N] [--only W[,W...]]
        [--quick] [--no-write] [--json] [--plots] [--from-json FILE]

Workloads (the names for --only):
  run-rootfs   `run --rm --rootfs R true` on a busybox rootfs vs bwrap, ch-run, crun, runc,
               podman; floors: python3 -I/-S -c pass, a static `true`, `unshare -Ur` + it
  run-image    `run --rm IMAGE true` on a three-layer image (overlay) vs podman
  scale        100 containers started at once: wall time and peak summed RSS (polled
               from /proc) vs runc, crun, podman, bwrap, ch-run
  pull         cold pull + unpack of a ~220 MB three-layer image from a local
               docker-registry, and a warm pull, vs podman, skopeo + umoci, and the floor
               `curl | pigz -dc | tar -x` per layer
  untar        50,000 small files and a 1 GB layer (tar and tar.gz) vs GNU tar, on a tmpfs
  diff-commit  diff and commit of 10 and 10,000 changes on Debian bookworm vs podman
  build        a five-step Dockerfile and its cached rebuild vs podman build --isolation chroot
  push         push of the ~220 MB image to a fresh registry vs skopeo copy
  squashfs     benchmarks/bench_squashfs.py's workload, when that script provides one

Every workload runs each contender once per round, in a new random order each round
(A B A B, shuffled), after warm-up rounds, and reports the median, min-max and the
ratio to rootless. The workload code lives in the per-workload scripts beside this one
(run_latency.py, bench_scale.py, bench_pull.py, bench_untar.py, bench_diff_commit.py,
bench_build.py, bench_push.py), imported as modules; each still runs on its own.

As root, run-rootfs, run-image and scale run as --as-user (default rltest-sub): the
rootless peers need an unprivileged user. The other workloads run as root, as their
scripts do. Podman runs with --runtime runc --cgroup-manager cgroupfs
--storage-driver overlay (the setup that works on a hybrid-cgroup host).

Output: a table on stdout (JSON with --json), and docs/benchmarks.md's generated part
rewritten (machine, tool versions, command line, date; the workloads not measured
now and every hand-written section are kept) unless --no-write. --quick (few rounds,
small sizes) is for smoke tests and never writes the document unless --write.
--plots draws docs/benchmarks/WORKLOAD.png with matplotlib (optional:
`pip install matplotlib`, or the `bench` extra).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import harness as H

DOC = os.path.join(REPO, "docs", "benchmarks.md")
PLOTS = os.path.join(REPO, "docs", "benchmarks")
WORKER_PYTHON = "/usr/bin/python3"  # readable by any user; the user workloads need only the stdlib
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
ORDER = ["run-rootfs", "run-image", "scale", "pull", "untar", "diff-commit", "build", "push", "squashfs"]
USER_WORKLOADS = {"run-rootfs", "run-image", "scale"}
# (rounds, warm-up) by default and with --quick
ROUNDS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "run-rootfs": ((30, 2), (3, 1)),
    "run-image": ((30, 2), (3, 1)),
    "scale": ((3, 1), (1, 0)),
    "pull": ((5, 1), (1, 1)),
    "untar": ((5, 1), (1, 0)),
    "diff-commit": ((5, 1), (1, 0)),
    "build": ((5, 0), (1, 0)),
    "push": ((5, 1), (1, 0)),
    "squashfs": ((5, 1), (1, 0)),
}
TOOLS: dict[str, list[str]] = {
    "rootless": ["ROOTLESS", "--version"],
    "python3": [WORKER_PYTHON, "--version"],
    "crun": ["crun", "--version"],
    "runc": ["runc", "--version"],
    "bwrap": ["bwrap", "--version"],
    "ch-run": ["ch-run", "--version"],
    "podman": ["podman", "--version"],
    "skopeo": ["skopeo", "--version"],
    "umoci": ["umoci", "--version"],
    "GNU tar": ["tar", "--version"],
    "curl": ["curl", "--version"],
    "pigz": ["pigz", "--version"],
    "docker-registry": ["docker-registry", "--version"],
    "unshare": ["unshare", "--version"],
    "gcc": ["gcc", "--version"],
    "mksquashfs": ["mksquashfs", "-version"],
}


@dataclass
class Options:
    rounds: int | None
    quick: bool
    as_user: str
    tmpdir: str
    workdir: str | None = None  # the worker's work directory (made by the parent)

    def rounds_for(self, name: str) -> tuple[int, int]:
        rounds, warmup = ROUNDS[name][1 if self.quick else 0]
        return (self.rounds or rounds), warmup


def rootless_bin() -> str:
    venv = os.environ.get("ROOTLESS_VENV", "/opt/rootless-venv")
    return os.environ.get("ROOTLESS_BIN") or f"{venv}/bin/rootless"


def identity() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def new_workload(name: str, title: str, description: str, opts: Options) -> H.Workload:
    rounds, warmup = opts.rounds_for(name)
    return H.Workload(name, title, description, identity=identity(), rounds=rounds, warmup=warmup)


def measure(w: H.Workload, trials: list[H.Trial], specs: list[tuple[str, str, str]],
            baseline: str = "rootless") -> H.Samples:
    samples = H.interleave(trials, w.rounds, w.warmup, log=lambda m: H.log(f"{w.name}: {m}"))
    w.cases = H.make_cases(specs, trials, samples, baseline)
    return samples


def _scratch(opts: Options, prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix, dir=opts.tmpdir)
    os.chmod(path, 0o755)
    return path


def _rm(path: str) -> None:
    # Files of subordinate ids or read-only dirs: rm -rf as root copes, rmtree may not;
    # as a user, files of subordinate ids go from inside a user namespace with them.
    subprocess.run(["rm", "-rf", path], check=False, stderr=subprocess.DEVNULL)
    if os.path.exists(path) and os.geteuid() != 0 and shutil.which("podman"):
        subprocess.run(["podman", "unshare", "rm", "-rf", path], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- start latency


def _latency_trial(c: Any, work: str) -> Callable[[], float]:
    import run_latency as RL

    def run() -> float:
        t0 = time.perf_counter()
        rc, err = RL.run_quiet(c.argv, c.env, work)
        dt = time.perf_counter() - t0
        if rc != 0:
            raise H.BenchError(f"exit {rc}: {H.one_line(err)}")
        return dt

    return run


def _latency_trials(cs: list[Any], work: str, rename: Mapping[str, str] | None = None) -> list[H.Trial]:
    rename = rename or {}
    return [H.Trial(rename.get(c.name, c.name), _latency_trial(c, work), ("start",), c.rounds, c.note,
                    c.error) for c in cs]  # fmt: skip


def _user_rootfs(work: str) -> str:
    import run_latency as RL

    rootfs = os.path.join(work, "rootfs")
    if not os.path.isdir(rootfs):
        RL.make_rootfs(rootfs, os.getuid(), os.getgid())
    return rootfs


def w_run_rootfs(opts: Options, work: str) -> H.Workload:
    import run_latency as RL

    w = new_workload("run-rootfs", "`run --rm --rootfs R true` on a busybox rootfs",
                     "Wall time of the whole command, `true` in a container on the same busybox "
                     "rootfs for every tool. Floors: the Python interpreter's start (`-I`: the "
                     "CLI's flags; `-S`: without site), a static C `true` (fork + exec), and the "
                     "same under `unshare -Ur` (+ a user namespace).", opts)  # fmt: skip
    rootfs = _user_rootfs(work)
    podman_rounds = min(w.rounds, 10)
    cs = RL.rootfs_contenders(work, rootfs, podman_rounds) + RL.floor_contenders(work)
    RL.check(cs, work)
    trials = _latency_trials(cs, work)
    samples = measure(w, trials, [("start", "run --rm … true, busybox rootfs", "s")])
    for c in cs:
        c.samples_ms = [v * 1000 for v in samples["start"].get(c.name, [])]
    d = RL.derive(cs)
    if "rootless_own_cost_ms" in d:
        w.notes.append(f"rootless's own cost (from its run plan no interpreter starts: the whole "
                       f"command): {d['rootless_own_cost_ms']:.1f} ms")
    if "no_plan_own_cost_ms" in d:
        w.notes.append(f"without a plan (the Python CLI; a command line's first run), its median minus "
                       f"`python3 -I -c pass`: {d['no_plan_own_cost_ms']:.1f} ms")
    if "own_cost_vs_ch_run" in d:
        w.notes.append(f"own cost / ch-run: {d['own_cost_vs_ch_run']:.2f}x (target <= 2x)")
    for peer in ("crun", "runc"):
        if f"{peer}_vs_rootless" in d:
            w.notes.append(f"{peer} / rootless: {d[peer + '_vs_rootless']:.2f}x (target: rootless no slower than crun)")
    if "podman_vs_rootless" in d:
        w.notes.append(f"podman / rootless: {d['podman_vs_rootless']:.2f}x (target >= 10x)")
    return w


def w_run_image(opts: Options, work: str) -> H.Workload:
    import run_latency as RL

    w = new_workload("run-image", "`run --rm IMAGE true` on a three-layer image (overlay)",
                     "The busybox rootfs split into a three-layer image (busybox, its applet "
                     "links, the rest), loaded from one oci-archive into each store; an overlay "
                     "root in the user namespace.", opts)  # fmt: skip
    rootfs = _user_rootfs(work)
    # the same command on the plain rootfs, in the same run, for the ratio
    plain = RL.Contender("rootless rootfs", [RL.ROOTLESS, "run", "--rm", "--rootfs", rootfs, "true"],
                         RL.base_env() | {"ROOTLESS_ROOT": os.path.join(work, "rootless-store")},
                         note="the same `run --rm … true` on the busybox rootfs, from its plan")
    cs = [plain, *RL.image_contenders(work, rootfs, min(w.rounds, 10))]
    RL.check(cs, work)
    trials = _latency_trials(cs, work, {"rootless image": "rootless", "podman image": "podman",
                                        "rootless image (no plan)": "rootless (no plan)"})
    samples = measure(w, trials, [("start", "run --rm IMAGE true, three layers", "s")])
    for c in cs:
        shown = {"rootless image": "rootless", "podman image": "podman",
                 "rootless image (no plan)": "rootless (no plan)"}.get(c.name, c.name)
        c.samples_ms = [v * 1000 for v in samples["start"].get(shown, [])]
    d = RL.derive(cs)
    if "image_vs_rootfs" in d:
        w.notes.append(f"rootless image / rootless rootfs: {d['image_vs_rootfs']:.2f}x (target <= 1.3x)")
    if "podman_image_vs_rootless_image" in d:
        w.notes.append(f"podman / rootless on the image: {d['podman_image_vs_rootless_image']:.2f}x "
                       f"(target >= 10x)")
    return w


# ---------------------------------------------------------------- scale


def w_scale(opts: Options, work: str) -> H.Workload:
    import bench_scale as BS
    import run_latency as RL

    count = 10 if opts.quick else 100
    w = new_workload("scale", f"{count} containers started at once",
                     f"{count} x `true` on the busybox rootfs, every process started at once; "
                     "wall time until the last one exits, and the peak of the summed RSS of every "
                     "process below the harness (its tree walked through /proc every 10 ms, so "
                     "a process shorter than that can be missed; shared pages count in each "
                     "process; daemonizing helpers stay in the tree: the harness is a child "
                     "subreaper).", opts)  # fmt: skip
    rootfs = _user_rootfs(work)
    cs = RL.rootfs_contenders(work, rootfs, 0)
    RL.check(cs, work)
    BS.become_subreaper()
    counter = itertools.count()

    def trial(c: Any) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            n = next(counter)
            argvs = []
            for i in range(count):
                argv = list(c.argv)
                if c.name in ("crun", "runc"):  # a container id per instance
                    argv[-1] = f"{argv[-1]}-{n}-{i}"
                argvs.append(argv)
            with BS.RssPeak() as peak:
                try:
                    wall = BS.launch_together(argvs, c.env, work)
                except RuntimeError as exc:
                    raise H.BenchError(str(exc)) from None
            return {"wall": wall, "peak": peak.peak_kib / 1024}

        return run

    trials = [H.Trial(c.name, trial(c), ("wall", "peak"), min(w.rounds, 2) if c.name == "podman" else 0,
                      c.note, c.error) for c in cs]  # fmt: skip
    measure(w, trials, [("wall", f"{count} x run --rm true at once: wall time", "s"),
                        ("peak", f"{count} x run --rm true at once: peak summed RSS", "MiB")])
    return w


# ---------------------------------------------------------------- pull and push


def w_pull(opts: Options) -> H.Workload:
    import bench_pull as BP

    sources = BP.QUICK_LAYER_SOURCES if opts.quick else BP.LAYER_SOURCES
    w = new_workload("pull", "Pull and unpack of a three-layer image from a local registry",
                     "A three-layer gzip image made from this host's files (pigz -6), served by "
                     "Debian's `docker-registry` on 127.0.0.1 (plain HTTP); registry storage, "
                     "stores and unpack targets on a tmpfs. Cold: a fresh store each time; warm: "
                     "the image is already there (only the manifest is fetched). Floors: `curl` of "
                     "the blobs, and `curl | pigz -dc | tar -x` layer after layer.", opts)  # fmt: skip
    work = _scratch(opts, "rl-compare-pull-")
    registry = None
    try:
        layout, blobs = BP.build_layout(work, sources)
        registry, ref = BP.serve_layout(work, layout)
        bench = BP.Bench(work, ref.split("/")[0], blobs)
        sizes = [os.path.getsize(p) for p in blobs]
        raw = sum(os.path.getsize(os.path.join(dp, f)) for s in sources for d in s if os.path.isdir(d)
                  for dp, _, fs in os.walk(d) for f in fs if not os.path.islink(os.path.join(dp, f)))
        cold = f"cold pull + unpack, {_mb(raw)} in {len(sizes)} layers ({_mb(sum(sizes))} gzip)"
        trials = [
            H.Trial("rootless", bench.rootless, ("cold",), note="fresh store"),
            H.Trial("podman", bench.podman, ("cold",), note="fresh --root"),
            H.Trial("skopeo + umoci", bench.skopeo_umoci, ("cold",), note="copy to oci: + unpack --rootless"),
            H.Trial("floor: curl | pigz -dc | tar -x", bench.floor_untar, ("cold",), note="layer after layer"),
            H.Trial("floor: curl", bench.floor_curl, ("cold",), note="download only"),
            H.Trial("rootless", bench.rootless_warm, ("warm",)),
            H.Trial("podman", bench.podman_warm, ("warm",)),
        ]  # fmt: skip
        measure(w, trials, [("cold", cold, "s"), ("warm", "warm pull (every layer present)", "s")])
        w.notes.append(f"layers (gzip): {', '.join(f'{s / 1e6:.1f} MB' for s in sizes)}")
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait()
        _rm(work)
    return w


def w_push(opts: Options) -> H.Workload:
    import bench_pull as BP
    import bench_push as BPush

    w = new_workload("push", "Push of the three-layer image to a fresh local registry",
                     "The pull workload's image, pulled once into a rootless store; every timed "
                     "push goes to a new `docker-registry` (new storage, new port), so every byte "
                     "is uploaded. skopeo reads the very same blobs (the store is an OCI layout).",
                     opts)  # fmt: skip
    work = _scratch(opts, "rl-compare-push-")
    try:
        store, name, sizes = BPush.prepare(work, BP.QUICK_LAYER_SOURCES if opts.quick else None)
        bench = BPush.Bench(work, store, name)
        trials = [
            H.Trial("rootless", bench.rootless, ("push",), note="monolithic uploads, 4 blobs at once"),
            H.Trial("rootless-chunked", bench.rootless_chunked, ("push",), note="8 MiB PATCH chunks"),
            H.Trial("skopeo", bench.skopeo, ("push",), note="skopeo copy oci:STORE docker://"),
        ]  # fmt: skip
        measure(w, trials, [("push", f"push, {len(sizes)} gzip layers, {_mb(sum(sizes))}", "s")])
    finally:
        _rm(work)
    return w


# ---------------------------------------------------------------- untar


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 10e6 else f"{size / 1e6:.1f} MB"


def w_untar(opts: Options) -> H.Workload:
    import bench_untar as BU

    dirs, per_dir, large_mb = (20, 100, 50) if opts.quick else (500, 100, 1024)
    files = dirs * per_dir
    w = new_workload("untar", "Layer unpack: rl_untar vs GNU tar",
                     f"`rl_untar` (the C unpacker behind pull, through `rootless.native.untar`) and "
                     f"GNU tar on the same archives, into a fresh directory on a fresh tmpfs; the "
                     f"removal is not timed. Small: {files:,} files of 0-4 KiB in {dirs} "
                     f"directories; large: a {large_mb} MB layer (70% in 64-192 MiB files). Both "
                     f"keep owners and modes (root). The .tar.gz rows: gzip decompressed in Python "
                     f"({BU.GZIP_IMPL}) and piped into rl_untar, against `tar -xzf`.", opts)  # fmt: skip
    base = Path(_scratch(opts, "rl-compare-untar-"))
    mounted = False
    try:
        if os.geteuid() == 0:
            BU.mount_tmpfs(base, f"{max(1, large_mb * 4 // 1000 + 1)}g")
            mounted = True
        small, large = base / "small.tar", base / "large.tar"
        BU.make_small(small, dirs, per_dir)
        BU.make_large(large, large_mb)
        BU.gz(small, base / "small.tar.gz")
        BU.gz(large, base / "large.tar.gz")
        specs, trials = [], []
        for key, label, tar in (("small", f"{files:,} small files", small),
                                ("large", f"{large_mb} MB layer", large)):  # fmt: skip
            tgz = tar.with_suffix(".tar.gz")
            specs += [(f"{key}", f"{label} ({_mb(tar.stat().st_size)} tar)", "s"),
                      (f"{key}.gz", f"{label} ({_mb(tgz.stat().st_size)} .tar.gz)", "s")]
            for case, ours, gnu, n1, n2 in (
                (key, BU.ours(tar), BU.gnu(tar), "rl_untar", "tar -xf"),
                (f"{key}.gz", BU.ours_gz(tgz), BU.gnu(tgz, z=True), f"{BU.GZIP_IMPL} + rl_untar", "tar -xzf"),
            ):  # fmt: skip
                trials.append(H.Trial("rootless", functools.partial(BU.once, ours, base, "out-rl"), (case,),
                                      note=n1))
                trials.append(H.Trial("GNU tar", functools.partial(BU.once, gnu, base, "out-gnu"), (case,),
                                      note=n2))
        measure(w, trials, specs)
        w.notes.append(f"work directory: {H.filesystem(str(base))}")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(base)], check=False)
        _rm(str(base))
    return w


# ---------------------------------------------------------------- diff and commit


def w_diff_commit(opts: Options) -> H.Workload:
    import bench_diff_commit as BD

    ns = (10, 200) if opts.quick else (10, 10000)
    w = new_workload("diff-commit", "diff and commit on Debian bookworm",
                     "The debootstrapped Debian bookworm minbase tree, imported into each store. "
                     "A container (made once, not timed) changes N files: a quarter appends to "
                     "existing files under /usr (copy-ups), the rest are new files in /data. Then "
                     "`diff` and `commit` of it, each round (a new image name per commit). rootless "
                     "commit writes a gzip layer blob, as for a push; podman commit stores an "
                     "uncompressed layer in containers/storage.", opts)  # fmt: skip
    work = _scratch(opts, "rl-compare-diff-")
    user = opts.as_user if os.geteuid() == 0 else None
    if user:
        w.identity = user
    try:
        tarball, entries = BD.debian_tarball(work)
        os.makedirs(os.path.join(work, "rl"))
        rl = BD.Runner(user, os.path.join(work, "rl"))
        if user:
            pw = pwd.getpwnam(user)
            os.chown(os.path.join(work, "rl"), pw.pw_uid, pw.pw_gid)
        pm = BD.Podman(os.path.join(work, "pm"), user)
        setup_err: dict[str, str] = {}
        try:
            rl("import", tarball, "bench-debian:1")
            for n in ns:
                rl("run", "--name", f"c{n}", "bench-debian:1", "sh", "-c", BD.change_script(n, "/usr", 0.25))
        except RuntimeError as exc:
            setup_err["rootless"] = str(exc)
        try:
            pm("import", tarball, "localhost/bench-debian:1")
            for n in ns:
                pm("run", "--name", f"c{n}", "--network", "none", "localhost/bench-debian:1", "sh", "-c",
                   BD.change_script(n, "/usr", 0.25))  # fmt: skip
        except RuntimeError as exc:
            setup_err["podman"] = str(exc)
        counter = itertools.count()

        def trial(run: Callable[..., float]) -> Callable[[], dict[str, float]]:
            def go() -> dict[str, float]:
                i = next(counter)
                out = {}
                for n in ns:
                    try:
                        out[f"diff {n}"] = run("diff", f"c{n}")
                        out[f"commit {n}"] = run("commit", f"c{n}", f"bench-commit:{n}-{i}")
                    except RuntimeError as exc:
                        raise H.BenchError(str(exc)) from None
                return out

            return go

        cases = tuple(f"{k} {n}" for n in ns for k in ("diff", "commit"))
        trials = [H.Trial("rootless", trial(rl), cases, error=setup_err.get("rootless", "")),
                  H.Trial("podman", trial(pm), cases, error=setup_err.get("podman", ""))]
        measure(w, trials, [(f"{k} {n}", f"{k}, {n:,} changes", "s") for n in ns for k in ("diff", "commit")])
        lines = {who: [r.lines("diff", f"c{n}") for n in ns] for who, r in (("rootless", rl), ("podman", pm))
                 if who not in setup_err}  # fmt: skip
        w.notes.append(f"image: {entries:,} entries; diff lines for {' and '.join(f'{n:,}' for n in ns)} "
                       f"changes: " + "; ".join(f"{k} {', '.join(f'{x:,}' for x in v)}" for k, v in lines.items()))
    finally:
        _rm(work)
    return w


# ---------------------------------------------------------------- build


def w_build(opts: Options) -> H.Workload:
    import bench_build as BB

    w = new_workload("build", "Build of a five-step Dockerfile and its cached rebuild",
                     "On Debian bookworm minbase (imported into a fresh store each round, not "
                     "timed, no network): ENV, WORKDIR, COPY of 200 small files, a RUN copying "
                     "/usr/share/doc and running `dpkg -l`, CMD. Cached: the same build again, "
                     "every step from the cache. podman: `build --isolation chroot --layers`.",
                     opts)  # fmt: skip
    top = _scratch(opts, "rl-compare-build-")
    try:
        tarball = BB.debian_tarball(top)

        def trial(fn: Callable[[], tuple[float, float]]) -> Callable[[], dict[str, float]]:
            def go() -> dict[str, float]:
                try:
                    cold, warm = fn()
                except RuntimeError as exc:
                    raise H.BenchError(str(exc)) from None
                return {"build": cold, "cached": warm}

            return go

        trials = [H.Trial("rootless", trial(lambda: BB.rootless_round(top, tarball, None)), ("build", "cached")),
                  H.Trial("podman", trial(lambda: BB.podman_round(top, tarball)), ("build", "cached"),
                          note="--isolation chroot --layers")]  # fmt: skip
        measure(w, trials, [("build", "five-step build", "s"), ("cached", "fully cached rebuild", "s")])
    except RuntimeError as exc:
        w.error = str(exc)
    finally:
        _rm(top)
    return w


# ---------------------------------------------------------------- squashfs (optional)


def w_squashfs(opts: Options) -> H.Workload:
    """The workload of benchmarks/bench_squashfs.py (another script's), when it offers
    `compare_workload(quick: bool) -> (trials, specs, notes, cleanup)`: harness.Trial
    objects, (case key, title, unit) specs as for harness.make_cases, note lines, and a
    callable that removes what it set up."""
    w = new_workload("squashfs", "Single-file images (squashfs)", "", opts)
    try:
        import bench_squashfs as BQ  # type: ignore[import-not-found]
    except ImportError:
        w.error = "benchmarks/bench_squashfs.py is not there"
        return w
    hook = getattr(BQ, "compare_workload", None)
    if hook is None:
        w.error = "bench_squashfs.py has no compare_workload(); run it on its own"
        return w
    trials, specs, notes, cleanup = hook(opts.quick)
    try:
        measure(w, trials, specs)
        w.notes += list(notes)
    finally:
        cleanup()
    return w


# ---------------------------------------------------------------- driver

ROOT_WORKLOADS: dict[str, Callable[[Options], H.Workload]] = {
    "pull": w_pull, "untar": w_untar, "diff-commit": w_diff_commit, "build": w_build, "push": w_push,
    "squashfs": w_squashfs,
}  # fmt: skip
USER_FNS: dict[str, Callable[[Options, str], H.Workload]] = {
    "run-rootfs": w_run_rootfs, "run-image": w_run_image, "scale": w_scale,
}  # fmt: skip


def copy_harness(dest: str) -> str:
    """This directory and tests/helpers/rootfs.py under `dest` (readable by anyone, so the
    worker runs from a checkout the user cannot read); the copied compare.py."""
    shutil.copytree(HERE, os.path.join(dest, "benchmarks"), ignore=shutil.ignore_patterns("__pycache__"))
    helpers = os.path.join(dest, "tests", "helpers")
    os.makedirs(helpers)
    shutil.copy2(os.path.join(REPO, "tests", "helpers", "rootfs.py"), helpers)
    subprocess.run(["chmod", "-R", "a+rX", dest], check=True)
    return os.path.join(dest, "benchmarks", "compare.py")


def run_as_user(names: list[str], opts: Options, argv_extra: list[str]) -> list[H.Workload]:
    """Run the user workloads in one worker process as opts.as_user; its JSON back."""
    pw = pwd.getpwnam(opts.as_user)
    top = _scratch(opts, "rl-compare-user-")
    try:
        script = copy_harness(os.path.join(top, "harness"))
        work = os.path.join(top, "work")
        os.makedirs(work)
        os.chown(work, pw.pw_uid, pw.pw_gid)
        env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "PATH": PATH, "LANG": "C.UTF-8",
               "ROOTLESS_BIN": rootless_bin()}  # fmt: skip
        for k in ("ROOTLESS_VENV",):
            if k in os.environ:
                env[k] = os.environ[k]
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
               WORKER_PYTHON, "-I", script, "--worker", ",".join(names), "--workdir", work, *argv_extra]
        H.log(f"running {', '.join(names)} as {opts.as_user}")
        proc = subprocess.run(cmd, env=env, cwd=work, stdout=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise H.BenchError(f"the worker as {opts.as_user} failed with exit {proc.returncode}")
        return [H.workload_from_json(d) for d in json.loads(proc.stdout)["workloads"]]
    finally:
        _rm(top)


def worker(names: list[str], opts: Options) -> int:
    work = opts.workdir or tempfile.mkdtemp(prefix="rl-compare-")
    out = []
    for name in names:
        out.append(run_one(name, functools.partial(USER_FNS[name], opts, work)))
    print(H.dump_json(out, {}))
    return 0


def run_one(name: str, fn: Callable[[], H.Workload]) -> H.Workload:
    """fn(), with the load average around it; an exception becomes the workload's error."""
    before = H.load_average()
    try:
        w = fn()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        w = H.Workload(name, name, identity=identity(), error=H.describe_error(exc))
        H.log(f"{name}: not measured: {w.error}")
    w.load = f"{before} -> {H.load_average()}"
    return w


def machine_header(meta: Mapping[str, Any]) -> str:
    m, v = meta["machine"], meta["versions"]
    lines = [
        "## Side by side: benchmarks/compare.py",
        "",
        (f"Last run {meta['date']}: `{meta['command']}` at commit {meta['commit']} "
         f"(each workload below says when it was measured)."),
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {H._md_escape(val)} |" for k, val in m.items()],
        "",
        "| tool | version |",
        "|---|---|",
        *[f"| {k} | {H._md_escape(val)} |" for k, val in v.items()],
        "",
        ("Each table: one row per tool; `median` and `min–max` over the rounds, `x rootless` the "
         "ratio of medians (above 1: slower than rootless). A tool that cannot run on this host "
         "shows its error instead of a number."),
    ]
    return "\n".join(lines)


SUMMARY_RE = re.compile(r"<!-- summary: (.*?) -->")


def section_md(w: H.Workload, plot: str | None) -> str:
    rows = H.render_summary_md([w]).splitlines()[2:]
    hidden = "".join(f"<!-- summary: {r} -->\n" for r in rows)
    return hidden + H.render_workload_md(w, plot)


def summary_for(sections: Mapping[str, str]) -> str:
    rows = [r for name in ORDER + sorted(set(sections) - set(ORDER)) if name in sections
            for r in SUMMARY_RE.findall(sections[name])]  # fmt: skip
    if not rows:
        return ""
    return "\n".join(["| workload | rootless | peers (median, x rootless) |", "|---|---:|---|", *rows])


def write_doc(workloads: list[H.Workload], meta: Mapping[str, Any], plots: Mapping[str, str],
              path: str = DOC) -> None:
    text = Path(path).read_text() if os.path.exists(path) else "# Benchmarks\n\n"
    sections = {w.name: section_md(w, plots.get(w.name)) for w in workloads}
    new = H.update_doc(text, machine_header(meta), sections, ORDER, summary_for)
    with open(path, "w") as f:
        f.write(new)
    H.log(f"wrote {os.path.relpath(path, REPO)}")


def draw_plots(workloads: list[H.Workload], out_dir: str = PLOTS) -> dict[str, str]:
    links = {}
    for w in workloads:
        if not any(r.samples for c in w.cases for r in c.rows):
            continue
        path = os.path.join(out_dir, f"{w.name}.png")
        if not H.plot_workload(w, path):
            H.log("matplotlib is not installed (pip install matplotlib, or the `bench` extra): no plots")
            return {}
        links[w.name] = f"benchmarks/{w.name}.png"
        H.log(f"plot: {os.path.relpath(path, REPO)}")
    return links


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="workloads: " + ", ".join(ORDER))
    p.add_argument("--rounds", type=int, help="rounds for every workload (default: per workload)")
    p.add_argument("--only", help="comma-separated workloads (default: all)")
    p.add_argument("--quick", action="store_true", help="few rounds and small sizes (smoke test)")
    p.add_argument("--no-write", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--write", action="store_true", help="rewrite docs/benchmarks.md even with --quick")
    p.add_argument("--json", action="store_true", help="print JSON on stdout (the table goes to stderr)")
    p.add_argument("--plots", action="store_true", help="draw docs/benchmarks/WORKLOAD.png (matplotlib)")
    p.add_argument("--from-json", metavar="FILE", help="report a saved --json run instead of measuring")
    p.add_argument("--as-user", default="rltest-sub", help="user for run-rootfs, run-image, scale as root")
    p.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                   help="where work directories go (default /dev/shm)")
    p.add_argument("--doc", default=DOC, help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    opts = Options(args.rounds, args.quick, args.as_user, args.tmpdir or tempfile.gettempdir(), args.workdir)
    if args.worker:
        return worker(args.worker.split(","), opts)
    names = ORDER if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"compare.py: unknown workload {unknown[0]!r} (one of {', '.join(ORDER)})", file=sys.stderr)
        return 2
    if not args.only:
        names = [n for n in names if n != "squashfs" or os.path.exists(os.path.join(HERE, "bench_squashfs.py"))]
    if args.from_json:
        with open(args.from_json) as f:
            data = json.load(f)
        meta = data["meta"]
        workloads = [H.workload_from_json(d) for d in data["workloads"] if d["name"] in names]
    else:
        meta, workloads = measure_all(names, opts, argv)
    text = H.render_text(workloads)
    if args.json:
        print(text, file=sys.stderr)
        print(H.dump_json(workloads, meta))
    else:
        print(text)
    plots = draw_plots(workloads) if args.plots else {}
    if not args.no_write and (args.write or not args.quick):
        write_doc(workloads, meta, plots, args.doc)
    return 0


def measure_all(names: list[str], opts: Options, argv: list[str]) -> tuple[dict[str, Any], list[H.Workload]]:
    tools = {k: [rootless_bin() if a == "ROOTLESS" else a for a in v] for k, v in TOOLS.items()}
    prog = "sudo " if os.geteuid() == 0 else ""
    if os.environ.get("ROOTLESS_BIN"):
        prog += f"ROOTLESS_BIN={shlex.quote(os.environ['ROOTLESS_BIN'])} "
    script = os.path.relpath(os.path.abspath(__file__), REPO)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": prog + " ".join(shlex.quote(a) for a in [sys.executable, script, *argv]),
        "commit": H.git_commit(REPO),
        "machine": H.machine_info({"root": "/", "work": opts.tmpdir}),
        "versions": H.tool_versions(tools),
        "load_before": H.load_average(),
    }
    os.environ["ROOTLESS_BIN"] = rootless_bin()  # the workload scripts read it when imported
    results: dict[str, H.Workload] = {}
    user_names = [n for n in names if n in USER_WORKLOADS]
    if user_names:
        if os.geteuid() == 0:
            extra = (["--quick"] if opts.quick else []) + (["--rounds", str(opts.rounds)] if opts.rounds else [])
            try:
                for w in run_as_user(user_names, opts, extra):
                    results[w.name] = w
            except (H.BenchError, OSError, KeyError, ValueError) as exc:
                for n in user_names:
                    results[n] = H.Workload(n, n, identity=opts.as_user, error=H.describe_error(exc))
        else:
            work = _scratch(opts, "rl-compare-user-")
            try:
                for n in user_names:
                    results[n] = run_one(n, functools.partial(USER_FNS[n], opts, work))
            finally:
                _rm(work)
    for n in names:
        if n in ROOT_WORKLOADS:
            H.log(f"{n}: starting")
            results[n] = run_one(n, functools.partial(ROOT_WORKLOADS[n], opts))
    meta["load_after"] = H.load_average()
    for w in results.values():
        w.date, w.command, w.commit = meta["date"], meta["command"], meta["commit"]
    return meta, [results[n] for n in names if n in results]


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
