#!/usr/bin/env python3
"""Container start latency: `rootless run --rm --rootfs R true` against its peers.

All contenders run the same busybox rootfs and `true`, side by side in one run:
each round runs every contender once in a shuffled order, so a slow moment of
the machine hits all of them alike. Reports median and p90 wall time (ms) per
contender, ratios, and rootless's own cost (its median minus the interpreter
floor `python3 -I -c pass`) against the targets:

  own cost <= 2x charliecloud's ch-run      rootless >= 10x faster than podman

Usage (as root it drops to --as-user, default rltest-sub, since rootless peers
need an unprivileged user; as a normal user it runs as you):

  sudo python3 benchmarks/run_latency.py [--rounds 30] [--podman-rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

VENV = os.environ.get("ROOTLESS_VENV", "/opt/rootless-venv")
ROOTLESS = os.environ.get("ROOTLESS_BIN") or f"{VENV}/bin/rootless"
PYTHON = "/usr/bin/python3"  # the venv's interpreter is a copy of this one
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Contender:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    rounds: int = 0  # 0: all rounds
    note: str = ""
    error: str = ""
    samples_ms: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        if not s:
            return {}
        p90 = s[max(0, math.ceil(0.9 * len(s)) - 1)]
        return {"n": len(s), "median": statistics.median(s), "p90": p90, "min": s[0]}


# ---------------------------------------------------------------- setup


def run_quiet(argv: list[str], env: dict[str, str], cwd: str) -> tuple[int, str]:
    proc = subprocess.run(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stderr.decode("utf-8", "replace").strip()


def base_env() -> dict[str, str]:
    pw = pwd.getpwuid(os.getuid())
    return {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "PATH": PATH,
            "LANG": "C.UTF-8"}  # fmt: skip


def oci_bundle(tool: str, work: str, rootfs: str) -> str:
    """`<tool> spec --rootless` bundle running `true` on the shared rootfs."""
    bundle = os.path.join(work, f"{tool}-bundle")
    os.makedirs(bundle, exist_ok=True)
    if os.path.exists(os.path.join(bundle, "config.json")):  # made for an earlier workload
        os.unlink(os.path.join(bundle, "config.json"))
    subprocess.run([tool, "spec", "--rootless"], cwd=bundle, check=True, capture_output=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    config["root"]["path"] = rootfs
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return bundle


def three_layer_archive(work: str, rootfs: str) -> str:
    """An oci-archive of the rootfs split in three layers (busybox, its applet links,
    the rest), for the overlay contenders; returns its path."""
    import gzip
    import hashlib
    import io
    import tarfile

    layout = os.path.join(work, "oci")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest

    groups: list[list[str]] = [[], [], []]
    for top, dirs, files in os.walk(rootfs):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, rootfs)
            if rel == "bin/busybox":
                groups[0].append(rel)
            elif rel.startswith("bin/") and os.path.islink(path):
                groups[1].append(rel)
            else:
                groups[2].append(rel)
    layers, diff_ids = [], []
    for names in groups:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if names is groups[0] or names is groups[1]:
                tar.add(os.path.join(rootfs, "bin"), arcname="bin", recursive=False)
            for rel in names:
                tar.add(os.path.join(rootfs, rel), arcname=rel, recursive=False)
        data = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        blob = gzip.compress(data, compresslevel=1, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": put(blob), "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": layers}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench/three:latest"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    archive = os.path.join(work, "three.oci.tar")
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(os.path.join(layout, name), arcname=name)
    return archive


STATIC_TRUE_C = "int main(void) { return 0; }\n"


def static_true(work: str) -> str | None:
    """A static `true` built with gcc (no dynamic loader, no libc start-up cost to
    speak of): the floor of fork + exec. None without gcc or a static libc."""
    src, exe = os.path.join(work, "true.c"), os.path.join(work, "true-static")
    with open(src, "w") as f:
        f.write(STATIC_TRUE_C)
    for flags in (["-O2", "-static", "-s"], ["-O2", "-static-pie", "-s"]):
        try:
            if subprocess.run(["gcc", *flags, "-o", exe, src], capture_output=True,
                              check=False).returncode == 0:
                os.chmod(exe, 0o755)
                return exe
        except OSError:
            return None
    return None


def floor_contenders(work: str) -> list[Contender]:
    """What any container start on this host costs at least: the Python interpreter's
    start (`-I`: the rootless CLI's flags; `-S`: without site), and a static `true`
    plain and in a new user namespace (`unshare -Ur`)."""
    env = base_env()
    cs = [
        Contender("python -I -c pass", [PYTHON, "-I", "-c", "pass"], env, note="interpreter floor"),
        Contender("python -S -c pass", [PYTHON, "-S", "-c", "pass"], env, note="no site module"),
    ]
    exe = static_true(work)
    err = "" if exe else "gcc -static failed (no gcc or no static libc)"
    cs.append(Contender("static true", [exe or "true-static"], env, note="fork + exec floor",
                        error=err))
    cs.append(Contender("unshare -Ur static true", ["unshare", "-Ur", exe or "true-static"], env,
                        note="+ user namespace", error=err))
    return cs


def rootfs_contenders(work: str, rootfs: str, podman_rounds: int) -> list[Contender]:
    """`true` on the busybox rootfs: rootless and its peers (floors excluded)."""
    env = base_env()
    xdg = os.path.join(work, "xdg")
    os.makedirs(xdg, mode=0o700, exist_ok=True)
    rl_env = env | {"ROOTLESS_ROOT": os.path.join(work, "rootless-store")}
    cs = [
        Contender("rootless", [ROOTLESS, "run", "--rm", "--rootfs", rootfs, "true"], rl_env,
                  note="from its run plan (every run after the first)"),
        Contender("rootless (no plan)", [ROOTLESS, "run", "--rm", "--rootfs", rootfs, "true"],
                  rl_env | {"ROOTLESS_PLAN_CACHE": "0"},
                  note="the Python CLI every time, as on a command line's first run"),
        Contender("bwrap", ["bwrap", "--unshare-all", "--share-net", "--uid", "0", "--gid", "0",
                            "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "true"],
                  env),
        Contender("ch-run", ["ch-run", rootfs, "--", "true"], env),
    ]  # fmt: skip
    for tool in ("crun", "runc"):
        if not shutil.which(tool, path=PATH):
            cs.append(Contender(tool, [tool], env, error=f"{tool} not installed"))
            continue
        bundle = oci_bundle(tool, work, rootfs)
        state = os.path.join(work, f"{tool}-state")
        cs.append(Contender(tool, [tool, "--root", state, "run", "-b", bundle, f"bench-{tool}"],
                            env, note="spec --rootless"))  # fmt: skip
    cs.append(Contender("podman", [*podman_argv(work), "run", "--rm", "--network", "host",
                                   "--rootfs", rootfs, "true"],
                        env | {"XDG_RUNTIME_DIR": xdg}, rounds=podman_rounds,
                        note="--runtime runc --cgroup-manager cgroupfs, --network host"))  # fmt: skip
    return cs


def podman_argv(work: str) -> list[str]:
    return [
        "podman", "--root", f"{work}/podman/root", "--runroot", f"{work}/podman/run",
        "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--storage-driver", "overlay",
        "--events-backend", "file",
    ]  # fmt: skip


def image_contenders(work: str, rootfs: str, podman_rounds: int) -> list[Contender]:
    """The same rootfs as a three-layer image: overlay root in the user namespace."""
    env = base_env()
    xdg = os.path.join(work, "xdg")
    os.makedirs(xdg, mode=0o700, exist_ok=True)
    archive = three_layer_archive(work, rootfs)
    store_env = env | {"ROOTLESS_ROOT": os.path.join(work, "rootless-images")}
    rc, err = run_quiet([ROOTLESS, "load", "-i", archive], store_env, work)
    image = "bench/three:latest"
    cs = [Contender("rootless image", [ROOTLESS, "run", "--rm", image, "true"], store_env,
                    note="three layers, overlay; from its run plan", error="" if rc == 0 else f"load: {err}"),
          Contender("rootless image (no plan)", [ROOTLESS, "run", "--rm", image, "true"],
                    store_env | {"ROOTLESS_PLAN_CACHE": "0"}, note="the Python CLI every time",
                    error="" if rc == 0 else f"load: {err}")]
    pimg = podman_argv(work)
    rc, err = run_quiet([*pimg, "load", "-i", archive], env | {"XDG_RUNTIME_DIR": xdg}, work)
    cs.append(Contender("podman image", [*pimg, "run", "--rm", "--network", "host", image, "true"],
                        env | {"XDG_RUNTIME_DIR": xdg}, rounds=podman_rounds,
                        note="three layers, overlay", error="" if rc == 0 else f"load: {err}"))
    return cs


def contenders(work: str, rootfs: str, podman_rounds: int) -> list[Contender]:
    return (floor_contenders(work) + rootfs_contenders(work, rootfs, podman_rounds)
            + image_contenders(work, rootfs, podman_rounds))


def crun_fallback(c: Contender) -> None:
    """crun refuses hybrid cgroup hosts; retry with --cgroup-manager=disabled."""
    c.argv = [c.argv[0], "--cgroup-manager=disabled", *c.argv[1:]]
    c.note += ", --cgroup-manager=disabled"


def check(cs: list[Contender], work: str) -> None:
    """Run each contender once; keep the error of those that cannot start here."""
    for c in cs:
        if c.error:
            continue
        if not shutil.which(c.argv[0], path=PATH):
            c.error = f"{c.argv[0]} not installed"
            continue
        rc, err = run_quiet(c.argv, c.env, work)
        if rc != 0 and c.name == "crun":
            first = err.splitlines()[0] if err else f"exit {rc}"
            crun_fallback(c)
            rc, err = run_quiet(c.argv, c.env, work)
            if rc != 0:
                err = f"plain: {first}; disabled: {err}"
        if rc != 0:
            c.error = f"exit {rc}: {err.splitlines()[-1] if err else ''}"[:300]


# ---------------------------------------------------------------- measuring


def measure(cs: list[Contender], rounds: int, warmup: int, work: str) -> None:
    live = [c for c in cs if not c.error]
    for r in range(warmup + rounds):
        order = [c for c in live if not c.rounds or r < warmup + c.rounds]
        random.shuffle(order)
        for c in order:
            t0 = time.perf_counter_ns()
            rc, err = run_quiet(c.argv, c.env, work)
            dt = (time.perf_counter_ns() - t0) / 1e6
            if rc != 0:
                c.error = f"round {r}: exit {rc}: {err[-300:]}"
                live.remove(c)
            elif r >= warmup:
                c.samples_ms.append(dt)


def derive(cs: list[Contender]) -> dict[str, Any]:
    med = {c.name: c.stats()["median"] for c in cs if c.samples_ms}
    out: dict[str, Any] = {}
    if "rootless" in med:
        # From a run plan no interpreter starts: the whole command is the runtime's own cost.
        own = med["rootless"]
        out["rootless_own_cost_ms"] = own
        if "ch-run" in med:
            out["own_cost_vs_ch_run"] = own / med["ch-run"]
            out["target_own_cost_le_2x_ch_run"] = own <= 2 * med["ch-run"]
        for peer in ("crun", "runc"):
            if peer in med:
                out[f"{peer}_vs_rootless"] = med[peer] / med["rootless"]
        if "podman" in med:
            out["podman_vs_rootless"] = med["podman"] / med["rootless"]
            out["target_10x_faster_than_podman"] = med["podman"] >= 10 * med["rootless"]
    if "rootless (no plan)" in med and "python -I -c pass" in med:
        out["no_plan_own_cost_ms"] = med["rootless (no plan)"] - med["python -I -c pass"]
    if "rootless image" in med:
        if "podman image" in med:
            out["podman_image_vs_rootless_image"] = med["podman image"] / med["rootless image"]
        rootfs = med.get("rootless rootfs", med.get("rootless"))
        if rootfs:
            out["image_vs_rootfs"] = med["rootless image"] / rootfs
    return out


def versions() -> dict[str, str]:
    v = {"kernel": platform.release(), "cpus": str(os.cpu_count())}
    for tool, args in (("rootless", [ROOTLESS, "--version"]), ("crun", ["crun", "--version"]),
                       ("runc", ["runc", "--version"]), ("bwrap", ["bwrap", "--version"]),
                       ("ch-run", ["ch-run", "--version"]), ("podman", ["podman", "--version"])):  # fmt: skip
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
            v[tool] = (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            v[tool] = "?"
    return v


def markdown(cs: list[Contender], derived: dict[str, Any], meta: dict[str, Any]) -> str:
    floor = next((c.stats()["median"] for c in cs if c.name.startswith("python") and c.samples_ms),
                 None)  # fmt: skip
    rl = next((c.stats()["median"] for c in cs if c.name == "rootless" and c.samples_ms), None)
    head = (
        f"{meta['rounds']} interleaved rounds (podman {meta['podman_rounds']}), "
        f"{meta['warmup']} warm-up, as {meta['user']}; kernel {meta['versions']['kernel']}, "
        f"{meta['versions']['cpus']} cpus"
    )
    lines = [
        head,
        "",
        "| contender | n | median ms | p90 ms | x floor | x rootless | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in cs:
        if not c.samples_ms:
            lines.append(f"| {c.name} | 0 | - | - | - | - | failed: {c.error} |")
            continue
        s = c.stats()
        xf = f"{s['median'] / floor:.2f}" if floor else "-"
        xr = f"{s['median'] / rl:.2f}" if rl else "-"
        lines.append(f"| {c.name} | {s['n']} | {s['median']:.1f} | {s['p90']:.1f} | {xf} | {xr} "
                     f"| {c.note} |")  # fmt: skip
    lines.append("")
    if "rootless_own_cost_ms" in derived:
        lines.append(f"- rootless own cost (median rootless - median python floor): "
                     f"{derived['rootless_own_cost_ms']:.1f} ms")  # fmt: skip
    if "own_cost_vs_ch_run" in derived:
        ok = "met" if derived["target_own_cost_le_2x_ch_run"] else "NOT met"
        lines.append(f"- own cost / ch-run median: {derived['own_cost_vs_ch_run']:.2f}x "
                     f"(target <= 2x: {ok})")  # fmt: skip
    if "podman_image_vs_rootless_image" in derived:
        r = derived["podman_image_vs_rootless_image"]
        lines.append(f"- three-layer image: podman / rootless median: {r:.2f}x "
                     f"(target >= 10x: {'met' if r >= 10 else 'NOT met'})")
    if "image_vs_rootfs" in derived:
        r = derived["image_vs_rootfs"]
        lines.append(f"- three-layer image / plain rootfs (rootless): {r:.2f}x "
                     f"(target <= 1.3x: {'met' if r <= 1.3 else 'NOT met'})")
    if "podman_vs_rootless" in derived:
        ok = "met" if derived["target_10x_faster_than_podman"] else "NOT met"
        lines.append(f"- podman / rootless median: {derived['podman_vs_rootless']:.2f}x "
                     f"(target >= 10x: {ok})")  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------- driver


def make_rootfs(dest: str, uid: int, gid: int) -> None:
    """tests/helpers/rootfs.py's make_rootfs, loaded by path: it needs only the
    standard library, while the helpers package around it imports pytest."""
    import importlib.util

    path = os.path.join(REPO, "tests", "helpers", "rootfs.py")
    spec = importlib.util.spec_from_file_location("rootless_test_rootfs", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_rootfs(dest, uid, gid)


def drop_to_user(user: str, argv: list[str]) -> int:
    """As root: build the rootfs for `user`, then rerun this script as them (from stdin,
    so a checkout under a 0700 /root still works)."""
    pw = pwd.getpwnam(user)
    work = tempfile.mkdtemp(prefix="rl-bench-", dir="/tmp")
    try:
        return _run_as(pw, work, argv)
    finally:
        if "--keep" not in argv:
            shutil.rmtree(work, ignore_errors=True)


def _run_as(pw: pwd.struct_passwd, work: str, argv: list[str]) -> int:
    os.chmod(work, 0o755)
    rootfs = os.path.join(work, "rootfs")
    make_rootfs(rootfs, pw.pw_uid, pw.pw_gid)
    os.chown(work, pw.pw_uid, pw.pw_gid)
    user = pw.pw_name
    cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
           PYTHON, "-I", "-", *argv, "--workdir", work, "--rootfs", rootfs]  # fmt: skip
    env = {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "PATH": PATH, "LANG": "C.UTF-8"}
    with open(os.path.abspath(__file__), "rb") as script:
        return subprocess.run(cmd, stdin=script, env=env, cwd="/", check=False).returncode


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--podman-rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    p.add_argument("--as-user", default="rltest-sub", help="user to drop to when run as root")
    p.add_argument("--only", help="comma-separated contender names (python is always kept)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--rootfs", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() == 0:
        return drop_to_user(args.as_user, argv)
    work = args.workdir or tempfile.mkdtemp(prefix="rl-bench-", dir="/tmp")
    rootfs = args.rootfs
    if not rootfs:
        rootfs = os.path.join(work, "rootfs")
        make_rootfs(rootfs, os.getuid(), os.getgid())
    cs = contenders(work, rootfs, args.podman_rounds)
    if args.only:
        keep = set(args.only.split(",")) | {"python -I -c pass"}
        cs = [c for c in cs if c.name in keep]
    check(cs, work)
    measure(cs, args.rounds, args.warmup, work)
    meta = {"rounds": args.rounds, "podman_rounds": args.podman_rounds, "warmup": args.warmup,
            "user": pwd.getpwuid(os.getuid()).pw_name, "versions": versions()}  # fmt: skip
    derived = derive(cs)
    if args.json:
        result = {"meta": meta, "derived": derived,
                  "contenders": [asdict(c) | {"stats": c.stats()} for c in cs]}  # fmt: skip
        print(json.dumps(result, indent=2))
    else:
        print(markdown(cs, derived, meta))
    if not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
