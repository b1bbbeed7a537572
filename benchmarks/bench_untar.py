#!/usr/bin/env python3
"""Layer unpack: rl_untar vs GNU tar, side by side (a script, not a timed test).

    sudo python benchmarks/bench_untar.py [--runs 5] [--dir /mnt/x] [--no-tmpfs] [--large-mb 1024]

As root it mounts a fresh tmpfs (so the disk does not dominate) and unmounts it at
the end; otherwise, or with --no-tmpfs, it works in --dir (default: a temporary
directory). Archives are generated once, deterministically:
  small  50,000 files of 0-4 KiB in 500 directories
  large  a 1 GB layer (--large-mb): ~70% in files of 64-192 MiB, ~25% in files of
         256 KiB-4 MiB, the rest in small files; about 2:1 compressible
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

REPO = Path(__file__).resolve().parents[1]
if any(REPO.joinpath("rootless").glob("_native*.so")):  # an in-place build: measure the tree
    sys.path.insert(0, str(REPO))

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


def make_small(path: Path, dirs: int = 500, per_dir: int = 100) -> None:
    """dirs x per_dir files of 0-4 KiB (default 50,000)."""
    rng = random.Random(1)
    pool = rng.randbytes(8192)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(dirs):
            _add_dir(tf, f"d{d:03d}", 1_600_000_000)
            for f in range(per_dir):
                n = rng.randrange(0, 4097)
                _add(
                    tf,
                    f"d{d:03d}/file-{f:03d}.txt",
                    pool[n % 4096 : n % 4096 + n],
                    1_600_000_000 + f,
                )


class _Repeat(io.RawIOBase):
    """`size` bytes of `chunk` repeated, read without building them in memory."""

    def __init__(self, chunk: bytes, size: int) -> None:
        self.chunk, self.left, self.pos = chunk, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        n = min(len(buf), self.left, len(self.chunk) - self.pos)
        buf[:n] = self.chunk[self.pos : self.pos + n]
        self.pos = (self.pos + n) % len(self.chunk)
        self.left -= n
        return n


def _half_compressible(rng: random.Random, size: int) -> bytes:
    """Random bytes from a 16-letter alphabet: gzip gets about 2:1, like real layers."""
    table = bytes(97 + (b & 15) for b in range(256))
    return rng.randbytes(size).translate(table)


def make_large(path: Path, total_mb: int = 1024) -> None:
    """A layer of about `total_mb` MB: ~70% in 64-192 MiB files, ~25% in 256 KiB-4 MiB
    files, ~5% in 0-16 KiB files."""
    rng = random.Random(3)
    chunk = _half_compressible(rng, (1 << 20) + 4099)  # odd length: no 1 MiB periodicity
    total = total_mb * 1_000_000
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_dir(tf, "big", 1)
        left, i = int(total * 0.70), 0
        while left > 0:
            n = min(left, rng.randrange(64 << 20, 192 << 20))
            ti = tarfile.TarInfo(f"big/blob{i}")
            ti.size, ti.mode, ti.mtime = n, 0o644, 2
            tf.addfile(ti, io.BufferedReader(_Repeat(chunk, n), 1 << 20))
            left, i = left - n, i + 1
        _add_dir(tf, "mid", 1)
        left, i = int(total * 0.25), 0
        while left > 0:
            n = min(left, rng.randrange(256 << 10, 4 << 20))
            off = rng.randrange(0, len(chunk) - 1)
            ti = tarfile.TarInfo(f"mid/f{i:04d}")
            ti.size, ti.mode, ti.mtime = n, 0o644, 3
            tf.addfile(ti, io.BufferedReader(_Repeat(chunk[off:] + chunk[:off], n), 1 << 20))
            left, i = left - n, i + 1
        left, i = int(total * 0.05), 0
        while left > 0:
            if i % 200 == 0:
                _add_dir(tf, f"small/{i // 200:03d}", 4)
            n = min(left, rng.randrange(0, 16 << 10))
            off = rng.randrange(0, len(chunk) - n)
            _add(tf, f"small/{i // 200:03d}/{i % 200:03d}", chunk[off : off + n], 5)
            left, i = left - n, i + 1


def gz(src: Path, dst: Path) -> None:
    """gzip -6 (pigz when installed: the same format, made faster)."""
    if shutil.which("pigz"):
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            subprocess.run(["pigz", "-6", "-n", "-c"], stdin=fin, stdout=fout, check=True)
        return
    with open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def gunzip_chunks(path: Path) -> Iterator[bytes]:
    d = fast_zlib.decompressobj(31)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            yield d.decompress(block)
    yield d.flush()


def once(fn: Callable[[Path], None], work: Path, name: str) -> float:
    """Wall time of one unpack by `fn` into a fresh directory (its removal not timed)."""
    dest = work / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir()
    t0 = time.perf_counter()
    fn(dest)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(dest)
    return elapsed


def mount_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "bench-untar", str(path)],
                   check=True)


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
    from rootless.native.untar import untar_fd

    def run(dest: Path) -> None:
        fd = os.open(tar, os.O_RDONLY)
        try:
            untar_fd(fd, dest, chown=os.geteuid() == 0)
        finally:
            os.close(fd)

    return run


def ours_gz(tgz: Path) -> Callable[[Path], None]:
    from rootless.native.untar import untar_stream

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
    ap.add_argument("--large-mb", type=int, default=1024, help="size of the large layer")
    args = ap.parse_args()

    base = Path(args.dir or tempfile.mkdtemp(prefix="bench-untar-"))
    base.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and not args.no_tmpfs:
        mount_tmpfs(base, f"{max(3, args.large_mb * 4 // 1000 + 1)}g")
        mounted = True
    fs = subprocess.run(
        ["stat", "-f", "-c", "%T", str(base)], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        small, large = base / "small.tar", base / "large.tar"
        make_small(small)
        make_large(large, args.large_mb)
        gz(small, base / "small.tar.gz")
        gz(large, base / "large.tar.gz")
        rows = []
        for label, tar in (("50,000 small files", small), (f"{args.large_mb} MB layer", large)):
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
