#!/usr/bin/env python3
"""Single-file images: start from a squashfs file vs the overlay store, and the cost
of writing the file (`save --format squashfs` vs mksquashfs of the unpacked tree).

    sudo python3 benchmarks/bench_squashfs.py [--rounds 30] [--save-rounds 3] [--tree DIR]

The image is a root filesystem tree (default: the Debian bookworm minbase that the
test suite caches in /var/cache/rootless-tests/debian-bookworm; --tree for another)
imported into a private store (`rootless import`) and saved as one squashfs file.
Then, side by side in shuffled rounds (A B A B), as the calling user:

  start  `run --rm IMAGE true` from the store (kernel overlayfs over the unpacked
         layers) vs `run --rm ./image-lz4.sqfs true` and the zstd file (squashfuse +
         overlayfs)
  read   the same, running `cat /usr/bin/* > /dev/null`: the layers are in the
         page cache, the file's contents go through a new squashfuse every time
  save   `save --format squashfs --compression lz4|zstd` (layers merged and streamed
         into sqfstar) vs `mksquashfs TREE -comp lz4|zstd` of the unpacked tree (both
         use every core)

Reports the median and min-max per row (the harness of compare.py) and the file
sizes. `benchmarks/compare.py --only squashfs` runs the same through
`compare_workload()`.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import harness as H

DEBIAN = "/var/cache/rootless-tests/debian-bookworm"
IMAGE = "bench-squashfs:latest"
COMPRESSIONS = ("lz4", "zstd")  # the default first
READ = "cat /usr/bin/* > /dev/null 2>&1; true"


def rootless_bin() -> str:
    venv = os.environ.get("ROOTLESS_VENV", "/opt/rootless-venv")
    return os.environ.get("ROOTLESS_BIN") or f"{venv}/bin/rootless"


class Setup:
    """A private store with the image, its squashfs files, and where outputs go."""

    def __init__(self, tree: str, top: str | None = None) -> None:
        if not os.path.isdir(os.path.join(tree, "usr", "bin")):
            raise H.BenchError(f"no root filesystem at {tree} (run the test suite once, or pass --tree)")
        self.tree = tree
        self.top = tempfile.mkdtemp(prefix="rl-bench-squashfs-", dir=top)
        os.chmod(self.top, 0o755)
        self.store = os.path.join(self.top, "store")
        self.runroot = os.path.join(self.top, "run")
        self.files = {comp: os.path.join(self.top, f"image-{comp}.sqfs") for comp in COMPRESSIONS}
        self.base = [rootless_bin(), "--root", self.store, "--runroot", self.runroot]
        tar = subprocess.Popen(["tar", "-C", tree, "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        H.run_checked([*self.base, "import", "-", IMAGE], stdin=tar.stdout)
        tar.wait()
        for comp, path in self.files.items():
            self.save(path, comp)
        self.sizes: dict[str, int] = {}

    def save(self, path: str, compression: str) -> None:
        H.run_checked([*self.base, "save", "--format", "squashfs", "--compression", compression, "-o", path,
                       IMAGE])  # fmt: skip

    def run(self, image: str, script: str) -> None:
        H.run_checked([*self.base, "run", "--rm", image, "sh", "-c", script])

    def mksquashfs(self, path: str, compression: str) -> None:
        H.run_checked(["mksquashfs", self.tree, path, "-comp", compression, "-noappend", "-quiet",
                       "-no-progress"])  # fmt: skip

    def cleanup(self) -> None:
        subprocess.run(["rm", "-rf", self.top], check=False, stderr=subprocess.DEVNULL)


def _median_of(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(H.timed(fn) for _ in range(repeat))


def _fresh(setup: Setup, label: str, make: Callable[[str], None]) -> float:
    """Time `make(path)` of a new file (the old one removed first, untimed)."""
    path = os.path.join(setup.top, "out-" + label.replace(" ", "_").replace("/", "") + ".sqfs")
    if os.path.exists(path):
        os.unlink(path)
    t = H.timed(lambda: make(path))
    setup.sizes[label] = os.path.getsize(path)
    if os.path.exists(path):
        os.unlink(path)
    return t


def trials(setup: Setup, repeat: int, save: bool = True) -> tuple[list[H.Trial], list[tuple[str, str, str]]]:
    """The trials and their cases; a start sample is the median of `repeat` runs. The
    baseline row ("rootless") is the store for start and read, the default
    compression for save."""
    specs = [("start", "run --rm IMAGE true", "s"),
             ("read", "run --rm IMAGE sh -c 'cat /usr/bin/* > /dev/null'", "s")]
    out = [
        H.Trial("rootless", functools.partial(_median_of, lambda: setup.run(IMAGE, "true"), repeat),
                ("start",), note="the store (overlayfs over the layers)"),
        H.Trial("rootless", lambda: H.timed(lambda: setup.run(IMAGE, READ)), ("read",),
                note="the store (overlayfs over the layers)"),
    ]
    for comp, path in setup.files.items():
        def start(path: str = path) -> float:
            return _median_of(lambda: setup.run(path, "true"), repeat)

        def read(path: str = path) -> float:
            return H.timed(lambda: setup.run(path, READ))

        name, note = f"rootless squashfs {comp}", f"./image-{comp}.sqfs (squashfuse + overlayfs)"
        out += [H.Trial(name, start, ("start",), note=note),
                H.Trial(name, read, ("read",), note=note + ", a new squashfuse each run")]
    if save:
        specs.append(("save", "write the image as one squashfs file", "s"))
        no_mk = "" if shutil.which("mksquashfs") else "mksquashfs is not installed"
        for comp in COMPRESSIONS:
            default = comp == COMPRESSIONS[0]
            label = f"save --compression {comp}"
            out.append(H.Trial("rootless" if default else f"rootless {comp}",
                               functools.partial(_fresh, setup, label, functools.partial(setup.save, compression=comp)),
                               ("save",), note=label + (" (the default)" if default else "")))
            label = f"mksquashfs -comp {comp}"
            out.append(H.Trial(f"mksquashfs {comp}",
                               functools.partial(_fresh, setup, label,
                                                 functools.partial(setup.mksquashfs, compression=comp)),
                               ("save",), note=label + " of the unpacked tree", error=no_mk))
    return out, specs


def size_notes(setup: Setup) -> list[str]:
    return [f"{name}: {size / 1e6:.1f} MB" for name, size in sorted(setup.sizes.items())] + [
        f"image: {setup.tree} ({H.filesystem(setup.top)})"]


def compare_workload(quick: bool) -> tuple[list[H.Trial], list[tuple[str, str, str]], list[str],
                                            Callable[[], None]]:
    """The hook benchmarks/compare.py calls (workload `squashfs`)."""
    setup = Setup(os.environ.get("ROOTLESS_BENCH_TREE", DEBIAN))
    ts, specs = trials(setup, repeat=3 if quick else 9)
    notes = ["a start sample is the median of 9 back-to-back runs (3 with --quick)"]
    notes += [f"save --compression {comp}: {os.path.getsize(path) / 1e6:.1f} MB"
              for comp, path in setup.files.items()]
    notes.append(f"image: {setup.tree} ({H.filesystem(setup.top)})")
    return ts, specs, notes, setup.cleanup


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="rounds of the start and read cases")
    ap.add_argument("--save-rounds", type=int, default=3, help="rounds of the save case (0: skip it)")
    ap.add_argument("--tree", default=DEBIAN, help="the root filesystem to make the image from")
    ap.add_argument("--dir", default=None, help="where the store and files go (default: $TMPDIR)")
    args = ap.parse_args()
    load_before = H.load_average()
    setup = Setup(args.tree, args.dir)
    try:
        who = f"{os.getuid()}"
        ts, specs = trials(setup, repeat=1)
        start = [t for t in ts if "save" not in t.cases]
        saves = [t for t in ts if "save" in t.cases]
        w = H.Workload("squashfs", "Single-file images (squashfs)", identity=who, rounds=args.rounds, warmup=2)
        samples = H.interleave(start, args.rounds, 2, log=H.log)
        if args.save_rounds:
            samples.update(H.interleave(saves, args.save_rounds, 0, log=H.log))
        w.cases = H.make_cases(specs if args.save_rounds else specs[:2], ts, samples)
        w.notes = size_notes(setup) + [f"load average {load_before} -> {H.load_average()}",
                                       f"{time.strftime('%Y-%m-%d %H:%M')}, commit {H.git_commit(REPO)}"]
        print(H.render_text([w]))
    finally:
        setup.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
