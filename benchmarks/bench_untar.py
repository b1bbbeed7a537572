#!/usr/bin/env python3
"""Layer unpack: rl_untar vs GNU tar, side by side (a script, not a timed test).

    sudo python benchmarks/bench_untar.py [--runs 5] [--dir /mnt/x] [--no-tmpfs]

As root it mounts a fresh tmpfs (so the disk does not dominate) and unmounts it at
the end; otherwise, or with --no-tmpfs, it works in --dir (default: a temporary
directory). Archives are generated once, deterministically:
  small  50,000 files of 0-4 KiB in 500 directories
  mixed  ~200 MB: a few 10-40 MB files, hundreds of 100 KiB-1 MiB, thousands of small
Each case is unpacked --runs times into a fresh directory, ours and GNU tar alternating
(the removal is not timed);
the table gives the median wall time and ratio GNU tar / rl_untar (> 1: we are faster).
Both sides do the same work: as root GNU tar keeps owners and modes, and we pass
chown=True. The .gz rows compare `tar -xzf` with our pipeline: gzip decompressed in
Python (isal if installed, else zlib), fed through a pipe to rl_untar.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rootless.native.untar import untar_fd, untar_stream

try:
    from isal import isal_zlib as fast_zlib  # type: ignore[import-not-found]

    GZIP_IMPL = "isal"
except ImportError:  # pragma: no cover - optional
    fast_zlib = zlib
    GZIP_IMPL = "zlib"


def _add(tf: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    ti.mtime = mtime
    tf.addfile(ti, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str, mtime: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = mtime
    tf.addfile(ti)


def make_small(path: Path) -> None:
    rng = random.Random(1)
    pool = rng.randbytes(8192)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(500):
            _add_dir(tf, f"d{d:03d}", 1_600_000_000)
            for f in range(100):
                n = rng.randrange(0, 4097)
                _add(
                    tf,
                    f"d{d:03d}/file-{f:03d}.txt",
                    pool[n % 4096 : n % 4096 + n],
                    1_600_000_000 + f,
                )


def make_mixed(path: Path) -> None:
    rng = random.Random(2)
    chunk = rng.randbytes(1 << 20)  # compressible enough to be realistic-ish, cheap to make
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_dir(tf, "big", 1)
        for i, mb in enumerate((10, 25, 40)):
            _add(tf, f"big/blob{i}", chunk * mb, 2)
        _add_dir(tf, "mid", 1)
        for i in range(200):
            n = rng.randrange(100 << 10, 1 << 20)
            _add(tf, f"mid/f{i:03d}", chunk[:n], 3)
        for d in range(20):
            _add_dir(tf, f"small/{d:02d}", 4)
            for f in range(200):
                n = rng.randrange(0, 16 << 10)
                _add(tf, f"small/{d:02d}/{f:03d}", chunk[n : 2 * n], 5)


def gz(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def gunzip_chunks(path: Path) -> Iterator[bytes]:
    d = fast_zlib.decompressobj(31)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            yield d.decompress(block)
    yield d.flush()


def timed(
    a: Callable[[Path], None], b: Callable[[Path], None], work: Path, runs: int
) -> tuple[float, float]:
    """Median wall times of a and b, run alternately into fresh directories."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        for side, fn in enumerate((a, b)):
            dest = work / f"out-{i}-{side}"
            dest.mkdir()
            t0 = time.perf_counter()
            fn(dest)
            times[side].append(time.perf_counter() - t0)
            shutil.rmtree(dest)
    return statistics.median(times[0]), statistics.median(times[1])


def ours(tar: Path) -> Callable[[Path], None]:
    def run(dest: Path) -> None:
        fd = os.open(tar, os.O_RDONLY)
        try:
            untar_fd(fd, dest, chown=os.geteuid() == 0)
        finally:
            os.close(fd)

    return run


def ours_gz(tgz: Path) -> Callable[[Path], None]:
    return lambda dest: untar_stream(gunzip_chunks(tgz), dest, chown=os.geteuid() == 0)


def gnu(tar: Path, z: bool = False) -> Callable[[Path], None]:
    flags = "-xzf" if z else "-xf"
    return lambda dest: subprocess.run(["tar", "-C", str(dest), flags, str(tar)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="work directory (default: a fresh tmpfs as root)")
    ap.add_argument("--no-tmpfs", action="store_true")
    args = ap.parse_args()

    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-untar-"))
    base.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and not args.no_tmpfs:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3g", "bench-untar", str(base)], check=True
        )
        mounted = True
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", str(base)], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        small, mixed = base / "small.tar", base / "mixed.tar"
        make_small(small)
        make_mixed(mixed)
        gz(small, base / "small.tar.gz")
        gz(mixed, base / "mixed.tar.gz")
        rows = []
        for label, tar in (("50,000 small files", small), ("~200 MB mixed", mixed)):
            size = tar.stat().st_size / 1e6
            t_ours, t_gnu = timed(ours(tar), gnu(tar), base, args.runs)
            rows.append((f"{label} ({size:.0f} MB tar)", "rl_untar", "tar -xf", t_ours, t_gnu))
            tgz = tar.with_suffix(".tar.gz")
            t_ours, t_gnu = timed(ours_gz(tgz), gnu(tgz, z=True), base, args.runs)
            rows.append(
                (f"{label} (.tar.gz)", f"{GZIP_IMPL} + rl_untar", "tar -xzf", t_ours, t_gnu)
            )
        print(
            f"filesystem: {fs}, runs: {args.runs} (median), euid {os.geteuid()}, "
            f"tar: {subprocess.run(['tar', '--version'], capture_output=True, text=True, check=False).stdout.splitlines()[0]}"
        )
        print()
        print("| case | ours | GNU tar | ours (s) | GNU tar (s) | GNU/ours |")
        print("|---|---|---|---:|---:|---:|")
        for label, a, b, ta, tb in rows:
            print(f"| {label} | {a} | {b} | {ta:.3f} | {tb:.3f} | {tb / ta:.2f}x |")
    finally:
        if mounted:
            subprocess.run(["umount", str(base)], check=False)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
