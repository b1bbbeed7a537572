"""In-process hot paths, timed with pytest-benchmark (not collected by `pytest tests`):

    python -m pytest benchmarks/test_hot_paths.py --benchmark-only
    python -m pytest benchmarks/test_hot_paths.py --benchmark-only --benchmark-compare  # vs a saved run

  untar      rl_untar (rootless.native.untar.untar_fd) of 10,000 small files and of four
             16 MiB files, from a tar on a tmpfs into a fresh directory
  manifest   parse_manifest of an image manifest (12 layers) and of a multi-platform
             index, parse_image_config, select_platform
  reference  parse_reference over a mix of short, qualified and digest references
  diff       rootless.overlay.diff.compute: an upper dir of 1,000 changes (new, copied-up
             and deleted entries) over a 10,000-entry lower layer
  commit     rootless.overlay.export.pack_upper of that upper dir to a tar, and the tar
             through sha256 (StreamDigest) and the gzip compressor commit uses

Trees live on /dev/shm (a tmpfs) when it exists, so the disk does not decide. Needs
pytest-benchmark (in the `test` extra); the test suite does not.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytest_benchmark")

from rootless.image import types as t  # noqa: E402
from rootless.image.manifest import (  # noqa: E402
    host_platform,
    parse_image_config,
    parse_manifest,
    select_platform,
)
from rootless.image.reference import parse_reference  # noqa: E402

SMALL_FILES = 10_000
LARGE_FILES, LARGE_SIZE = 4, 16 << 20
LOWER_FILES = 10_000
CHANGES = 1_000


@pytest.fixture(scope="module")
def shm() -> Iterator[Path]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="rl-hot-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- untar


def _tar(path: Path, members: Iterator[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        dirs: set[str] = set()
        for name, data in members:
            parent = name.rpartition("/")[0]
            if parent and parent not in dirs:
                ti = tarfile.TarInfo(parent)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
                tf.addfile(ti)
                dirs.add(parent)
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    return path


def _small_members() -> Iterator[tuple[str, bytes]]:
    rng = random.Random(1)
    pool = rng.randbytes(8192)
    for i in range(SMALL_FILES):
        n = rng.randrange(0, 4097)
        yield f"d{i // 100:03d}/f{i % 100:03d}", pool[n % 4096 : n % 4096 + n]


def _large_members() -> Iterator[tuple[str, bytes]]:
    chunk = random.Random(2).randbytes(1 << 20)
    for i in range(LARGE_FILES):
        yield f"big/blob{i}", chunk * (LARGE_SIZE >> 20)


def _bench_untar(benchmark: Any, shm: Path, tar: Path) -> None:
    from rootless.native.untar import untar_fd

    dest = shm / "untar-out"

    def setup() -> tuple[tuple[int], dict[str, object]]:
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir()
        return (os.open(tar, os.O_RDONLY | os.O_CLOEXEC),), {}

    def run(fd: int) -> None:
        try:
            untar_fd(fd, dest)
        finally:
            os.close(fd)

    benchmark.pedantic(run, setup=setup, rounds=10, iterations=1, warmup_rounds=1)
    shutil.rmtree(dest)


@pytest.mark.benchmark(group="untar")
def test_untar_small_files(benchmark: Any, shm: Path) -> None:
    tar = _tar(shm / "small.tar", _small_members())
    _bench_untar(benchmark, shm, tar)


@pytest.mark.benchmark(group="untar")
def test_untar_large_files(benchmark: Any, shm: Path) -> None:
    tar = _tar(shm / "large.tar", _large_members())
    _bench_untar(benchmark, shm, tar)


# ---------------------------------------------------------------- manifests and references

D = "sha256:" + "ab" * 32


def _manifest_bytes() -> bytes:
    layers = [{"mediaType": t.OCI_LAYER_GZIP, "digest": "sha256:" + f"{i:02x}" * 32, "size": 1000 + i,
               "annotations": {"org.opencontainers.image.title": f"layer{i}"}} for i in range(12)]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "mediaType": t.OCI_MANIFEST,
                       "config": {"mediaType": t.OCI_CONFIG, "digest": D, "size": 1234},
                       "layers": layers, "annotations": {"a": "b"}}).encode()  # fmt: skip


def _index_bytes() -> bytes:
    plats = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7"), ("linux", "arm", "v6"),
             ("linux", "386", ""), ("linux", "ppc64le", ""), ("linux", "s390x", ""), ("windows", "amd64", "")]
    manifests = []
    for i, (os_, arch, variant) in enumerate(plats):
        p: dict[str, str] = {"os": os_, "architecture": arch}
        if variant:
            p["variant"] = variant
        manifests.append({"mediaType": t.OCI_MANIFEST, "digest": "sha256:" + f"{i:02x}" * 32,
                          "size": 500, "platform": p})  # fmt: skip
    return json.dumps({"schemaVersion": 2, "mediaType": t.OCI_INDEX, "manifests": manifests}).encode()


def _config_bytes() -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": [f"V{i}=x" for i in range(20)], "Cmd": ["/bin/sh"], "WorkingDir": "/",
                   "Labels": {f"l{i}": "v" for i in range(10)}, "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + f"{i:02x}" * 32 for i in range(12)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"RUN step {i}"} for i in range(12)],
    }).encode()  # fmt: skip


@pytest.mark.benchmark(group="manifest")
def test_parse_manifest(benchmark: Any) -> None:
    data = _manifest_bytes()
    parsed = benchmark(parse_manifest, data)
    assert isinstance(parsed, t.Manifest) and len(parsed.layers) == 12


@pytest.mark.benchmark(group="manifest")
def test_parse_index_and_select_platform(benchmark: Any) -> None:
    data = _index_bytes()
    want = host_platform("x86_64")

    def run() -> t.Descriptor:
        index = parse_manifest(data)
        assert isinstance(index, t.Index)
        return select_platform(index, want)

    assert benchmark(run).digest.startswith("sha256:00")


@pytest.mark.benchmark(group="manifest")
def test_parse_image_config(benchmark: Any) -> None:
    data = _config_bytes()
    benchmark(parse_image_config, data)


REFERENCES = [
    "busybox", "busybox:1.36", "library/debian:bookworm", "docker.io/library/alpine:3.19",
    "ghcr.io/owner/project/image:v1.2.3", "localhost:5000/bench/image:v1",
    "127.0.0.1:5000/a/b/c/d:latest", f"quay.io/org/name@{D}", f"registry.example.com/x/y:tag@{D}",
    "[::1]:5000/ipv6/name:tag",
]  # fmt: skip


@pytest.mark.benchmark(group="reference")
def test_parse_references(benchmark: Any) -> None:
    def run() -> int:
        return sum(len(str(parse_reference(r))) for r in REFERENCES)

    assert benchmark(run) > 0


# ---------------------------------------------------------------- diff and commit packing


@pytest.fixture(scope="module")
def layers(shm: Path) -> tuple[str, str]:
    """(upper, lower): a lower layer of LOWER_FILES files in 100 directories; an upper dir
    with CHANGES changes: 50% new files, 40% copied-up (rewritten) files, 10% whiteouts
    (overlay format, a 0:0 character device, as root; `.wh.` files otherwise)."""
    lower, upper = shm / "lower", shm / "upper"
    for i in range(LOWER_FILES):
        d = lower / f"usr/lib/d{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i % 100:03d}").write_bytes(b"x" * (i % 2048))
    rng = random.Random(3)
    victims = rng.sample(range(LOWER_FILES), CHANGES // 2)
    for n, i in enumerate(victims):
        d = upper / f"usr/lib/d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        name = f"f{i % 100:03d}"
        if n < CHANGES // 10:
            if os.geteuid() == 0:
                os.mknod(d / name, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            else:
                (d / f".wh.{name}").write_bytes(b"")
        else:
            (d / name).write_bytes(b"changed\n" * 64)
    data = upper / "data"
    data.mkdir()
    for i in range(CHANGES - len(victims)):
        (data / f"new{i:04d}").write_bytes(b"new\n" * (i % 512))
    return str(upper), str(lower)


@pytest.mark.benchmark(group="diff")
def test_diff_walk(benchmark: Any, layers: tuple[str, str]) -> None:
    from rootless.overlay.diff import compute

    upper, lower = layers
    changes = benchmark(compute, upper, [lower])
    assert len(changes) >= CHANGES


@pytest.mark.benchmark(group="commit")
def test_pack_upper(benchmark: Any, layers: tuple[str, str]) -> None:
    from rootless.overlay.export import pack_upper

    upper, lower = layers

    def run() -> int:
        fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            return pack_upper(upper, fd, lowers_top_down=[lower])
        finally:
            os.close(fd)

    assert benchmark(run) >= CHANGES


@pytest.mark.benchmark(group="commit")
def test_commit_pack_digest_gzip(benchmark: Any, layers: tuple[str, str],
                                 shm: Path) -> None:
    """What commit does in-process: pack the upper dir to a file, hash it (the diffID)
    and gzip it (the blob)."""
    from rootless.image.layerio import _gzip_compressor
    from rootless.overlay.export import StreamDigest, pack_upper

    upper, lower = layers
    out = shm / "commit.tar"

    def run() -> int:
        with open(out, "wb") as f:
            pack_upper(upper, f.fileno(), lowers_top_down=[lower])
        digest, gz, size = StreamDigest(), _gzip_compressor(), 0
        with open(out, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(gz.compress(chunk))
        size += len(gz.flush())
        assert digest.digest.startswith("sha256:")
        return size

    assert benchmark(run) > 0
