#!/usr/bin/env python3
"""Cold and warm pull of a ~220 MB three-layer image from a local registry.

Contenders, side by side in one run (rounds in shuffled order, medians):
  rootless        rootless pull -q REF into a fresh store
  rootless-warm   the same pull again (all layers present)
  podman          podman pull (overlay storage, fresh --root)
  podman-warm     podman pull again into a store that has the image
  skopeo+umoci    skopeo copy docker://REF oci:DIR + umoci unpack --rootless
  floor-curl      curl of the three blobs, one after the other, to /dev/null
  floor-untar     curl BLOB | pigz -dc | tar -x, layer after layer

Everything (registry storage, stores, unpack targets) lives on a tmpfs
(/dev/shm by default), so disk speed does not decide. Run as root:

    sudo python3 benchmarks/bench_pull.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LAYER_SOURCES = [
    ["/usr/lib/gcc"],
    ["/usr/lib/python3.11"],
    ["/usr/share/perl", "/usr/lib/x86_64-linux-gnu/perl"],
]
# A few MB, for smoke runs (compare.py --quick).
QUICK_LAYER_SOURCES = [
    ["/usr/lib/python3.11/email"],
    ["/usr/lib/python3.11/json", "/usr/lib/python3.11/logging"],
    ["/usr/lib/python3.11/xml"],
]
ROOTLESS = os.environ.get("ROOTLESS_BIN", "/opt/rootless-venv/bin/rootless")
PODMAN = ["podman", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
          "--events-backend", "file"]  # fmt: skip


def sh(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(work: str, sources: list[list[str]] | None = None) -> tuple[str, list[str]]:
    """OCI layout with a gzip layer (pigz -6) per entry of `sources` (default: the
    ~220 MB LAYER_SOURCES); returns (layout, blob paths)."""
    layout = os.path.join(work, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    descs, diff_ids, paths = [], [], []
    for dirs in sources or LAYER_SOURCES:
        tar = subprocess.run(["tar", "--numeric-owner", "-C", "/", "-cf", "-",
                              *[d.lstrip("/") for d in dirs if os.path.exists(d)]],
                             check=True, capture_output=True).stdout  # fmt: skip
        blob = subprocess.run(["pigz", "-6", "-n", "-c"], input=tar, check=True, capture_output=True).stdout
        digest = sha(blob)
        path = os.path.join(blobs, digest[7:])
        with open(path, "wb") as f:
            f.write(blob)
        paths.append(path)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                      "size": len(blob)})  # fmt: skip
        diff_ids.append(sha(tar))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()  # fmt: skip
    with open(os.path.join(blobs, sha(config)[7:]), "wb") as f:
        f.write(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": descs}).encode()  # fmt: skip
    with open(os.path.join(blobs, sha(manifest)[7:]), "wb") as f:
        f.write(manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}  # fmt: skip
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return layout, paths


def start_registry(work: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        json.dump({"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                   "storage": {"filesystem": {"rootdirectory": os.path.join(work, "regdata")}},
                   "http": {"addr": f"127.0.0.1:{port}"}}, f)  # fmt: skip
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"docker-registry exited with {proc.returncode}")
    return proc, f"127.0.0.1:{port}"


def serve_layout(work: str, layout: str) -> tuple[subprocess.Popen[bytes], str]:
    """A registry in `work` holding the layout's image as bench/image:v1; returns
    (process, ref)."""
    registry, host = start_registry(work)
    try:
        sh(["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests",
            f"oci:{layout}:bench", f"docker://{host}/bench/image:v1"])  # fmt: skip
    except BaseException:
        registry.terminate()
        registry.wait()
        raise
    return registry, f"{host}/bench/image:v1"


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


class Bench:
    def __init__(self, work: str, host: str, blobs: list[str]) -> None:
        self.work = work
        self.host = host
        self.ref = f"{host}/bench/image:v1"
        self.blob_urls = [f"http://{host}/v2/bench/image/blobs/sha256:{os.path.basename(p)}" for p in blobs]
        self.warm_store = os.path.join(work, "warm-store")

    def fresh(self, name: str) -> str:
        path = os.path.join(self.work, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def rootless(self) -> float:
        store = self.fresh("rl-store")
        t = timed(lambda: sh([ROOTLESS, "--root", store, "pull", "-q", self.ref]))
        shutil.rmtree(self.warm_store, ignore_errors=True)
        os.rename(store, self.warm_store)
        return t

    def rootless_warm(self) -> float:
        if not os.path.isdir(self.warm_store):
            self.rootless()
        return timed(lambda: sh([ROOTLESS, "--root", self.warm_store, "pull", "-q", self.ref]))

    def podman(self) -> float:
        root, run = self.fresh("pm-root"), self.fresh("pm-run")
        t = timed(lambda: sh([*PODMAN, "--root", root, "--runroot", run, "pull", "-q", "--tls-verify=false",
                              self.ref]))  # fmt: skip
        subprocess.run([*PODMAN, "--root", root, "--runroot", run, "system", "reset", "-f"], check=False,
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        return t

    def podman_warm(self) -> float:
        """podman pull into a store that has the image (pulled once, not timed)."""
        root, run = os.path.join(self.work, "pm-warm-root"), os.path.join(self.work, "pm-warm-run")
        argv = [*PODMAN, "--root", root, "--runroot", run, "pull", "-q", "--tls-verify=false", self.ref]
        if not os.path.isdir(root):
            sh(argv)
        return timed(lambda: sh(argv))

    def skopeo_umoci(self) -> float:
        d = self.fresh("su")

        def run() -> None:
            sh(["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{self.ref}",
                f"oci:{d}/layout:v1"])  # fmt: skip
            sh(["umoci", "unpack", "--rootless", "--image", f"{d}/layout:v1", f"{d}/bundle"])

        return timed(run)

    def floor_curl(self) -> float:
        return timed(lambda: [sh(["curl", "-sf", "-o", "/dev/null", u]) for u in self.blob_urls])

    def floor_untar(self) -> float:
        d = self.fresh("untar")

        def run() -> None:
            for u in self.blob_urls:
                sh(["sh", "-c", f"curl -sf '{u}' | pigz -dc | tar -x -C '{d}'"])

        return timed(run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tmpfs", default="/dev/shm")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated contenders to skip")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rl-bench-pull-", dir=args.tmpfs)
    registry = None
    try:
        layout, blobs = build_layout(work)
        registry, ref = serve_layout(work, layout)
        bench = Bench(work, ref.split("/")[0], blobs)
        sizes = [os.path.getsize(p) for p in blobs]
        contenders = {
            "rootless": bench.rootless, "rootless-warm": bench.rootless_warm, "podman": bench.podman,
            "podman-warm": bench.podman_warm, "skopeo+umoci": bench.skopeo_umoci, "floor-curl": bench.floor_curl,
            "floor-untar": bench.floor_untar,
        }  # fmt: skip
        for name in filter(None, args.skip.split(",")):
            contenders.pop(name, None)
        results: dict[str, list[float]] = {k: [] for k in contenders}
        for fn in contenders.values():  # warm-up: page cache, registry
            fn()
        for _ in range(args.rounds):
            order = list(contenders)
            random.shuffle(order)
            for name in order:
                results[name].append(contenders[name]())
        report(results, sizes, args.json)
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict[str, list[float]], sizes: list[int], as_json: bool) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    if as_json:
        print(json.dumps({"medians_s": med, "runs_s": results, "blob_sizes": sizes}, indent=2))
        return
    base = med.get("rootless")
    print(f"image: 3 gzip layers, {sum(sizes) / 1e6:.1f} MB compressed ({', '.join(f'{s / 1e6:.1f}' for s in sizes)})")
    print(f"{'contender':<16} {'median':>9} {'min':>9} {'max':>9} {'vs rootless':>12}")
    for name, runs in results.items():
        ratio = f"{med[name] / base:.2f}x" if base else ""
        print(f"{name:<16} {med[name] * 1000:8.0f}ms {min(runs) * 1000:8.0f}ms {max(runs) * 1000:8.0f}ms {ratio:>12}")


if __name__ == "__main__":
    sys.exit(main())
