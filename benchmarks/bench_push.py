#!/usr/bin/env python3
"""Push of a ~220 MB (70 MB compressed) three-layer image to a local registry.

Contenders, side by side in one run (rounds in shuffled order, medians):
  rootless         rootless push REF DEST (monolithic uploads, 4 blobs in parallel)
  rootless-chunked the same with ROOTLESS_PUSH_CHUNK_SIZE=8 MiB (POST + PATCH... + PUT)
  skopeo           skopeo copy oci:STORE:REF docker://DEST: the same blobs, read
                   from rootless's store (an OCI layout), uploaded by skopeo

The image is the one bench_pull.py builds (this host's gcc, python and perl
trees), pulled once from a source registry into a rootless store. Every timed
push goes to a *fresh* docker-registry (new storage, new port), so nothing is
already there and nothing can be mounted: each run uploads every byte. Storage
and stores are on a tmpfs (/dev/shm by default). Run as root:

    sudo python3 benchmarks/bench_push.py [--rounds 5] [--json]
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

ROOTLESS = os.environ.get("ROOTLESS_BIN", "/opt/rootless-venv/bin/rootless")
CHUNK = str(8 << 20)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pull as BP


class Bench:
    def __init__(self, work: str, store: str, name: str) -> None:
        self.work = work
        self.store = store
        self.name = name  # the image's full name in the store
        self.count = 0
        self.env = dict(os.environ, HOME=os.path.join(work, "home"))
        os.makedirs(self.env["HOME"], exist_ok=True)

    def _registry(self) -> tuple[subprocess.Popen[bytes], str]:
        self.count += 1
        d = os.path.join(self.work, f"reg-{self.count}")
        os.makedirs(d)
        proc, host = BP.start_registry(d)
        return proc, host

    def _timed_push(self, argv_for: object, env: dict[str, str] | None = None) -> float:
        proc, host = self._registry()
        try:
            argv = argv_for(f"{host}/bench/pushed:v1")  # type: ignore[operator]
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=env or self.env)  # fmt: skip
            return time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait()
            shutil.rmtree(os.path.join(self.work, f"reg-{self.count}"), ignore_errors=True)

    def rootless(self) -> float:
        return self._timed_push(lambda dest: [ROOTLESS, "--root", self.store, "push", "-q", self.name, dest])

    def rootless_chunked(self) -> float:
        env = dict(self.env, ROOTLESS_PUSH_CHUNK_SIZE=CHUNK)
        return self._timed_push(
            lambda dest: [ROOTLESS, "--root", self.store, "push", "-q", self.name, dest], env
        )

    def skopeo(self) -> float:
        return self._timed_push(
            lambda dest: ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                          f"oci:{self.store}:{self.name}", f"docker://{dest}"]  # fmt: skip
        )


def prepare(work: str, sources: list[list[str]] | None = None) -> tuple[str, str, list[int]]:
    """Build the image (bench_pull's LAYER_SOURCES unless `sources`), serve it from a
    source registry, pull it into a store; returns (store, image name, blob sizes)."""
    layout, blobs = BP.build_layout(work, sources)
    src_dir = os.path.join(work, "source-registry")
    os.makedirs(src_dir)
    registry, ref = BP.serve_layout(src_dir, layout)
    try:
        store = os.path.join(work, "store")
        BP.sh([ROOTLESS, "--root", store, "pull", "-q", ref])
    finally:
        registry.terminate()
        registry.wait()
    return store, ref, [os.path.getsize(p) for p in blobs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tmpfs", default="/dev/shm")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rl-bench-push-", dir=args.tmpfs)
    try:
        store, name, sizes = prepare(work)
        bench = Bench(work, store, name)
        contenders = {"rootless": bench.rootless, "rootless-chunked": bench.rootless_chunked,
                      "skopeo": bench.skopeo}  # fmt: skip
        results: dict[str, list[float]] = {k: [] for k in contenders}
        for fn in contenders.values():  # warm-up: page cache
            fn()
        for _ in range(args.rounds):
            order = list(contenders)
            random.shuffle(order)
            for key in order:
                results[key].append(contenders[key]())
        report(results, sizes, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict[str, list[float]], sizes: list[int], as_json: bool) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    if as_json:
        print(json.dumps({"medians_s": med, "runs_s": results, "blob_sizes": sizes}, indent=2))
        return
    base = med["rootless"]
    total = sum(sizes) / 1e6
    print(f"image: 3 gzip layers, {total:.1f} MB compressed ({', '.join(f'{s / 1e6:.1f}' for s in sizes)})")
    print(f"{'contender':<17} {'median':>9} {'min':>9} {'max':>9} {'MB/s':>7} {'vs rootless':>12}")
    for key, runs in results.items():
        rate = total / med[key]
        print(f"{key:<17} {med[key] * 1000:8.0f}ms {min(runs) * 1000:8.0f}ms {max(runs) * 1000:8.0f}ms "
              f"{rate:7.0f} {med[key] / base:11.2f}x")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
