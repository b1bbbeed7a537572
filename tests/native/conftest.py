"""Fixtures for the native layer-unpacker tests (tests/native/test_untar*.py).

tar_builder()   -> TarBuilder: members written with the stdlib `tarfile` (any format),
                   hostile names included; .data() returns the archive bytes.
layer           -> Layer: a root directory to unpack into next to an `outside`
                   directory holding a secret file; .unpack(data, **flags) runs
                   rl_untar through a pipe, .outside_untouched() checks that nothing
                   beside the root changed, .tree() snapshots the root.
as_nobody       -> run a Python snippet as uid/gid 65534 (setpriv), or skip.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rootless.native.untar import UntarStats, untar_stream

MTIME = 1_600_000_000
NOBODY = 65534


class TarBuilder:
    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=fmt)  # noqa: SIM115 - closed by data()

    def _info(self, name: str, kind: bytes, **kw: Any) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = kw.get("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
        ti.uid = kw.get("uid", 0)
        ti.gid = kw.get("gid", 0)
        ti.mtime = kw.get("mtime", MTIME)
        ti.uname = ti.gname = ""
        if "pax" in kw:
            ti.pax_headers = dict(kw["pax"])
        return ti

    def file(self, name: str, data: bytes = b"", **kw: Any) -> TarBuilder:
        ti = self._info(name, tarfile.REGTYPE, **kw)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))
        return self

    def dir(self, name: str, **kw: Any) -> TarBuilder:
        self.tf.addfile(self._info(name, tarfile.DIRTYPE, **kw))
        return self

    def symlink(self, name: str, target: str, **kw: Any) -> TarBuilder:
        ti = self._info(name, tarfile.SYMTYPE, mode=kw.pop("mode", 0o777), **kw)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def hardlink(self, name: str, target: str, **kw: Any) -> TarBuilder:
        ti = self._info(name, tarfile.LNKTYPE, **kw)
        ti.linkname = target
        self.tf.addfile(ti)
        return self

    def fifo(self, name: str, **kw: Any) -> TarBuilder:
        self.tf.addfile(self._info(name, tarfile.FIFOTYPE, **kw))
        return self

    def device(
        self, name: str, major: int, minor: int, block: bool = False, **kw: Any
    ) -> TarBuilder:
        ti = self._info(name, tarfile.BLKTYPE if block else tarfile.CHRTYPE, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.tf.addfile(ti)
        return self

    def data(self) -> bytes:
        self.tf.close()
        return self.buf.getvalue()


def _outside_state(base: Path) -> dict[str, tuple[int, int, int, bytes]]:
    state: dict[str, tuple[int, int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if Path(dirpath) == base:
            dirnames[:] = [d for d in dirnames if d != "root"]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            body = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else b""
            state[os.path.relpath(p, base)] = (st.st_mode, st.st_nlink, st.st_size, body)
    return state


def tree(root: Path) -> dict[str, dict[str, Any]]:
    """Everything comparable about the files below root, keyed by relative path."""
    out: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            info: dict[str, Any] = {
                "type": stat.S_IFMT(st.st_mode),
                "mode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
            if not stat.S_ISLNK(st.st_mode):
                info["mtime"] = st.st_mtime_ns
            if stat.S_ISREG(st.st_mode):
                info["size"] = st.st_size
                info["sha"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                key = (st.st_dev, st.st_ino)
                info["inode"] = inodes.setdefault(key, rel) if st.st_nlink > 1 else rel
            elif stat.S_ISLNK(st.st_mode):
                info["link"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = info
    return out


class Layer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(b"secret\n")
        self._before = _outside_state(base)

    def unpack(self, data: bytes, chunk: int = 0, **kw: Any) -> UntarStats:
        if chunk:
            pieces: list[bytes] = [data[i : i + chunk] for i in range(0, len(data), chunk)]
            return untar_stream(pieces, self.root, **kw)
        return untar_stream([data], self.root, **kw)

    def outside_untouched(self) -> bool:
        return _outside_state(self.base) == self._before

    def tree(self) -> dict[str, dict[str, Any]]:
        return tree(self.root)


@pytest.fixture
def tar_builder() -> Callable[..., TarBuilder]:
    return TarBuilder


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, dict[str, Any]]]:
    return tree


@pytest.fixture
def layer(tmp_path: Path) -> Layer:
    return Layer(tmp_path)


def _nobody_python() -> str | None:
    for py in (sys.executable, "/opt/rootless-venv/bin/python", "/usr/bin/python3"):
        if not os.path.exists(py):
            continue
        probe = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                py,
                "-c",
                "import cffi",
            ],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return py
    return None


class Nobody:
    """Unpack as uid/gid 65534 in a world-traversable scratch directory."""

    def __init__(self, py: str, base: Path) -> None:
        self.py = py
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        os.chown(self.root, NOBODY, NOBODY)

    def unpack(self, data: bytes, **kw: Any) -> dict[str, Any]:
        tar = self.base / "layer.tar"
        tar.write_bytes(data)
        os.chmod(tar, 0o644)
        script = (
            "import json, sys\n"
            "from dataclasses import asdict\n"
            "from rootless.native.untar import untar_fd\n"
            "import os\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "try:\n"
            "    print(json.dumps(asdict(untar_fd(fd, sys.argv[2], **json.loads(sys.argv[3])))))\n"
            "except OSError as e:\n"
            "    print(json.dumps({'errno': e.errno, 'error': str(e)}))\n"
        )
        proc = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                self.py,
                "-P",  # not the checkout in the cwd: the installed package, with its C core
                "-c",
                script,
                str(tar),
                str(self.root),
                json.dumps(kw),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


@pytest.fixture
def as_nobody() -> Iterator[Nobody]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to switch to uid 65534")
    py = _nobody_python()
    if py is None:
        if os.environ.get("ROOTLESS_MUST_WORK") == "1":
            pytest.fail("no Python with cffi usable by uid 65534")
        pytest.skip("no Python with cffi usable by uid 65534")
    base = Path(
        tempfile.mkdtemp(prefix="rl-untar-", dir=os.environ.get("ROOTLESS_TEST_TMPDIR", "/tmp"))
    )
    os.chmod(base, 0o755)
    try:
        yield Nobody(py, base)
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
