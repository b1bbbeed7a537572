"""rl_untar: tar formats, member types, metadata order and whiteouts (run as root)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers.fs import xattr

from rootless.native import NativeError
from rootless.native.untar import untar_fd, untar_stream

MTIME = 1_600_000_000
root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)"
)
needs_gnu_tar = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_member_types(layer, tar_builder, fmt):
    data = (
        tar_builder(fmt)
        .dir("d", mode=0o750)
        .file("d/f", b"hello\n", mode=0o640)
        .file("d/exe", b"#!/bin/sh\n", mode=0o755)
        .symlink("d/rel", "f")
        .symlink("abs", "/etc/passwd")
        .hardlink("d/hard", "d/f")
        .fifo("d/fifo", mode=0o600)
        .file("empty")
        .data()
    )
    stats = layer.unpack(data)
    r = layer.root
    assert (r / "d/f").read_bytes() == b"hello\n"
    assert stat.S_IMODE(os.lstat(r / "d").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(r / "d/f").st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(r / "d/exe").st_mode) == 0o755
    assert os.readlink(r / "d/rel") == "f"
    assert os.readlink(r / "abs") == "/etc/passwd"
    assert os.lstat(r / "d/hard").st_ino == os.lstat(r / "d/f").st_ino
    assert stat.S_ISFIFO(os.lstat(r / "d/fifo").st_mode)
    assert (r / "empty").read_bytes() == b""
    for p in ("d", "d/f", "d/fifo", "empty"):
        assert os.lstat(r / p).st_mtime == MTIME, p
    assert os.lstat(r / "abs").st_mtime == MTIME
    assert stats.entries == 8 and stats.hardlinks == 1 and stats.bytes == 16
    assert layer.outside_untouched()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_links(layer, tar_builder, fmt):
    deep = "/".join([f"component-{i:02d}-" + "x" * 40 for i in range(8)])  # > 255 chars
    name150 = "n" * 150  # > 100, one component
    target = "/" + "t" * 200
    data = (
        tar_builder(fmt)
        .file(f"{deep}/file", b"deep")
        .file(name150, b"long")
        .symlink(f"{deep}/sym", target)
        .hardlink("hl", f"{deep}/file")
        .data()
    )
    layer.unpack(data)
    assert len(deep) > 255
    assert (layer.root / deep / "file").read_bytes() == b"deep"
    assert (layer.root / name150).read_bytes() == b"long"
    assert os.readlink(layer.root / deep / "sym") == target
    assert (layer.root / "hl").read_bytes() == b"deep"


def test_ustar_prefix_field(layer, tar_builder):
    name = "p" * 80 + "/" + "q" * 60 + "/leaf"  # > 100: needs the 155-byte prefix
    layer.unpack(tar_builder(tarfile.USTAR_FORMAT).file(name, b"x").data())
    assert (layer.root / name).read_bytes() == b"x"


def test_pax_overrides(layer, tar_builder):
    pax = {"mtime": "1234567890.5", "uid": "3000000", "gid": "3000001", "path": "real-name"}
    data = tar_builder().file("header-name", b"abc", pax=pax).data()
    stats = layer.unpack(data, chown=os.geteuid() == 0)
    st = os.lstat(layer.root / "real-name")
    assert not (layer.root / "header-name").exists()
    assert st.st_mtime_ns == 1234567890_500000000
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (3000000, 3000001)
    assert stats.entries == 1


def test_pax_global_header(layer):
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "1000"}
    ) as tf:
        for name in ("a", "b"):
            ti = tarfile.TarInfo(name)
            ti.size = 1
            ti.mtime = 5  # the ustar field; the global PAX value wins
            ti.pax_headers = {"mtime": "2000"} if name == "b" else {}
            tf.addfile(ti, io.BytesIO(b"z"))
    layer.unpack(buf.getvalue())
    assert os.lstat(layer.root / "a").st_mtime == 1000
    assert os.lstat(layer.root / "b").st_mtime == 2000


def test_large_file_and_odd_chunks(layer, tar_builder):
    blob = os.urandom(3 * 1024 * 1024 + 17)
    data = tar_builder().file("big", blob).file("after", b"tail").data()
    stats = layer.unpack(data, chunk=65537)
    assert (layer.root / "big").read_bytes() == blob
    assert (layer.root / "after").read_bytes() == b"tail"
    assert stats.bytes == len(blob) + 4


def test_tiny_chunks(layer, tar_builder):
    data = tar_builder().dir("d").file("d/f", b"x" * 1000).symlink("s", "d/f").data()
    layer.unpack(data, chunk=7)
    assert (layer.root / "s").read_bytes() == b"x" * 1000


def test_untar_fd_from_file(layer, tar_builder, tmp_path):
    path = tmp_path / "l.tar"
    path.write_bytes(tar_builder().file("f", b"1").data())
    fd = os.open(path, os.O_RDONLY)
    try:
        stats = untar_fd(fd, layer.root)
    finally:
        os.close(fd)
    assert stats.entries == 1 and (layer.root / "f").read_bytes() == b"1"


def test_file_object_source(layer, tar_builder):
    data = tar_builder().file("f", b"obj").data()
    untar_stream(io.BytesIO(data), layer.root)
    assert (layer.root / "f").read_bytes() == b"obj"


def test_source_error_is_reported(layer, tar_builder):
    data = tar_builder().file("f", b"x" * 100000).data()

    def broken():
        yield data[:1000]
        raise ValueError("bad gzip")

    with pytest.raises(ValueError, match="bad gzip"):
        untar_stream(broken(), layer.root)


def test_whole_source_consumed_after_end_marker(layer, tar_builder):
    data = tar_builder().file("f", b"x").data() + b"\0" * 100000
    seen = []

    def chunks():
        for i in range(0, len(data), 4096):
            seen.append(i)
            yield data[i : i + 4096]

    untar_stream(chunks(), layer.root)
    assert seen[-1] + 4096 >= len(data)


# ------------------------------------------------------------------ sparse


def _sparse_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"middle")
        f.seek(8 << 20)
        f.write(b"end")
        f.truncate(16 << 20)
    return src


@needs_gnu_tar
@pytest.mark.parametrize(
    "tar_opts",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
    ids=["gnu-S", "pax-0.0", "pax-0.1", "pax-1.0"],
)
def test_sparse(layer, tmp_path, tar_opts):
    src = _sparse_source(tmp_path)
    archive = subprocess.run(
        ["tar", "-C", str(src), "--sparse", *tar_opts, "-cf", "-", "sparse"],
        check=True,
        capture_output=True,
    ).stdout
    assert len(archive) < 1 << 20  # the archive itself holds no holes
    stats = layer.unpack(archive)
    out = layer.root / "sparse"
    assert out.read_bytes() == (src / "sparse").read_bytes()
    st = os.stat(out)
    assert st.st_size == 16 << 20
    assert st.st_blocks * 512 < 1 << 20, "holes were written as data"
    assert stats.sparse_files == 1
    assert stats.bytes == 16 << 20


# ------------------------------------------------------------------ metadata


@root_only
def test_owner_mode_xattrs_order(layer, tar_builder):
    # security.capability v2: effective, cap_net_raw permitted
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    pax = {
        "SCHILY.xattr.user.foo": "bar",
        "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
    }
    data = (
        tar_builder()
        .file("suid", b"x", mode=0o4755, uid=1000, gid=1000, pax=pax)
        .file("sgid", b"x", mode=0o2711, uid=5, gid=6)
        .dir("sticky", mode=0o1777, uid=7, gid=8, pax={"SCHILY.xattr.user.dir": "1"})
        .symlink("link", "suid", uid=9, gid=10)
        .data()
    )
    layer.unpack(data, chown=True)
    r = layer.root
    st = os.lstat(r / "suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4755)
    assert xattr(r / "suid", "user.foo") == b"bar"
    assert xattr(r / "suid", "security.capability") is None  # file capabilities are dropped
    assert stat.S_IMODE(os.lstat(r / "sgid").st_mode) == 0o2711
    st = os.lstat(r / "sticky")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o1777)
    assert xattr(r / "sticky", "user.dir") == b"1"
    st = os.lstat(r / "link")
    assert (st.st_uid, st.st_gid) == (9, 10)


@root_only
def test_idmap(layer, tar_builder):
    data = tar_builder().file("f", uid=1000, gid=0).dir("d", uid=0, gid=50).data()
    layer.unpack(data, chown=True, uids=[(0, 100000, 65536)], gids=[(0, 200000, 65536)])
    assert (os.lstat(layer.root / "f").st_uid, os.lstat(layer.root / "f").st_gid) == (
        101000,
        200000,
    )
    assert (os.lstat(layer.root / "d").st_uid, os.lstat(layer.root / "d").st_gid) == (
        100000,
        200050,
    )


@root_only
def test_idmap_unmapped_fails(layer, tar_builder):
    data = tar_builder().file("f", uid=70000).data()
    with pytest.raises(NativeError) as info:
        layer.unpack(data, chown=True, uids=[(0, 100000, 65536)], gids=[(0, 200000, 65536)])
    assert info.value.errno == errno.EOVERFLOW
    assert "uid 70000" in str(info.value) and info.value.stage == "untar"


def test_directory_metadata_applied_after_content(layer, tar_builder):
    data = (
        tar_builder()
        .dir("ro", mode=0o555, mtime=111)
        .file("ro/f", b"x", mtime=222)
        .dir("ro/sub", mode=0o500, mtime=333)
        .file("ro/sub/g", b"y")
        .data()
    )
    layer.unpack(data)
    r = layer.root
    assert os.lstat(r / "ro").st_mtime == 111
    assert stat.S_IMODE(os.lstat(r / "ro").st_mode) == 0o555
    assert os.lstat(r / "ro/sub").st_mtime == 333
    assert stat.S_IMODE(os.lstat(r / "ro/sub").st_mode) == 0o500
    assert (r / "ro/sub/g").read_bytes() == b"y"
    os.chmod(r / "ro", 0o755)
    os.chmod(r / "ro/sub", 0o755)


def test_root_entry_sets_root_metadata(layer, tar_builder):
    layer.unpack(tar_builder().dir(".", mode=0o711, mtime=4242).file("./f", b"").data())
    st = os.lstat(layer.root)
    assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_mtime == 4242


def test_replacing_existing_entries(layer, tar_builder):
    r = layer.root
    (r / "d").mkdir()
    (r / "d/keep").write_bytes(b"lower")
    (r / "file-to-dir").write_bytes(b"x")
    (r / "dir-to-file").mkdir()
    (r / "dir-to-file/inner").write_bytes(b"x")
    os.symlink("/etc/passwd", r / "link-to-file")
    data = (
        tar_builder()
        .dir("d", mode=0o700)
        .dir("file-to-dir")
        .file("dir-to-file", b"now a file")
        .file("link-to-file", b"replaced")
        .file("twice", b"first")
        .file("twice", b"second")
        .data()
    )
    layer.unpack(data)
    assert (r / "d/keep").read_bytes() == b"lower"
    assert stat.S_IMODE(os.lstat(r / "d").st_mode) == 0o700
    assert (r / "file-to-dir").is_dir()
    assert (r / "dir-to-file").read_bytes() == b"now a file"
    assert not (r / "link-to-file").is_symlink()
    assert (r / "link-to-file").read_bytes() == b"replaced"
    assert (r / "twice").read_bytes() == b"second"


@root_only
def test_devices(layer, tar_builder):
    data = tar_builder().device("null", 1, 3).device("loop", 7, 0, block=True).data()
    stats = layer.unpack(data)
    st = os.lstat(layer.root / "null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(layer.root / "loop").st_mode)
    assert stats.devices_skipped == 0


def test_devices_refused(layer, tar_builder):
    data = tar_builder().device("null", 1, 3).file("f", b"ok").data()
    stats = layer.unpack(data, no_devices=True)
    assert not os.path.lexists(layer.root / "null")
    assert stats.devices_skipped == 1 and (layer.root / "f").read_bytes() == b"ok"


def test_overlay_xattrs_in_archive_dropped(layer, tar_builder):
    pax = {
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.overlay.redirect": "/x",
        "SCHILY.xattr.user.containers.override_stat": "0:0:04755:file",
        "SCHILY.xattr.user.ok": "1",
    }
    stats = layer.unpack(tar_builder().dir("d", pax=pax).data(), overlay=True, userxattr=True)
    d = layer.root / "d"
    assert xattr(d, "trusted.overlay.opaque") is None
    assert xattr(d, "user.overlay.redirect") is None
    assert xattr(d, "user.containers.override_stat") is None
    assert xattr(d, "user.ok") == b"1"
    assert stats.xattrs_dropped == 3


# ------------------------------------------------------------------ whiteouts


@root_only
@pytest.mark.parametrize("userxattr", [False, True])
def test_overlay_whiteouts(layer, tar_builder, userxattr):
    data = (
        tar_builder()
        .dir("etc")
        .file("etc/.wh.removed")
        .dir("opq")
        .file("opq/.wh..wh..opq")
        .file("opq/new", b"n")
        .file(".wh..wh.plnk")
        .data()
    )
    stats = layer.unpack(data, overlay=True, userxattr=userxattr)
    st = os.lstat(layer.root / "etc/removed")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not os.path.lexists(layer.root / "etc/.wh.removed")
    name = "user.overlay.opaque" if userxattr else "trusted.overlay.opaque"
    assert xattr(layer.root / "opq", name) == b"y"
    assert not os.path.lexists(layer.root / "opq/.wh..wh..opq")
    assert (layer.root / "opq/new").read_bytes() == b"n"
    assert stats.whiteouts == 2 and stats.skipped == 1


def test_flatten_whiteouts(layer, tar_builder):
    r = layer.root
    (r / "gone").mkdir()
    (r / "gone/deep").mkdir()
    (r / "gone/deep/file").write_bytes(b"x")
    (r / "file-gone").write_bytes(b"x")
    (r / "opq/sub").mkdir(parents=True)
    (r / "opq/old").write_bytes(b"lower")
    (r / "opq/sub/old").write_bytes(b"lower")
    (r / "kept").write_bytes(b"lower")
    data = (
        tar_builder()
        .file(".wh.gone")
        .file(".wh.file-gone")
        .file(".wh.never-existed")
        .file("opq/early", b"this layer, before the marker")
        .file("opq/sub/new", b"this layer")
        .file("opq/.wh..wh..opq")
        .file("opq/late", b"after")
        .data()
    )
    stats = layer.unpack(data)
    assert not os.path.lexists(r / "gone") and not os.path.lexists(r / "file-gone")
    assert not os.path.lexists(r / ".wh.gone")
    assert (r / "kept").read_bytes() == b"lower"
    assert sorted(os.listdir(r / "opq")) == ["early", "late", "sub"]
    assert os.listdir(r / "opq/sub") == ["new"]
    assert stats.whiteouts == 4


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("cut", ["mid-data", "mid-header", "no-end-marker"])
def test_truncated_archive(layer, tar_builder, cut):
    data = tar_builder().file("a", b"x" * 5000).file("b", b"y" * 10).data()
    end = {"mid-data": 2000, "mid-header": 512 * 12 + 100, "no-end-marker": 512 * 13}[cut]
    with pytest.raises(NativeError) as info:
        layer.unpack(data[:end])
    assert info.value.errno == errno.EIO and "truncated" in str(info.value)
    assert layer.outside_untouched()


def test_bad_checksum(layer, tar_builder):
    data = bytearray(tar_builder().file("a", b"x").data())
    data[0] ^= 1
    with pytest.raises(NativeError, match="checksum"):
        layer.unpack(bytes(data))


def test_dest_missing(tmp_path, tar_builder):
    with pytest.raises(FileNotFoundError):
        untar_stream([tar_builder().file("a").data()], tmp_path / "nope")


def test_flags_conflict(layer):
    with pytest.raises(ValueError):
        layer.unpack(b"", chown=True, override_stat=True)


# ------------------------------------------------------------------ GNU tar


def _rich_archive(tar_builder, fmt):
    # depth-first, each directory before its content (GNU tar applies a directory's
    # times when it leaves it; we apply all at the end: same result for this order)
    b = tar_builder(fmt)
    b.dir(".", mode=0o755)
    b.dir("usr", mode=0o755, uid=0, gid=0, mtime=1000)
    b.dir("usr/bin", mode=0o711, uid=2, gid=3, mtime=1001)
    b.file("usr/bin/tool", b"\x7fELF" + bytes(range(256)) * 40, mode=0o4755, uid=0, gid=0)
    b.file("usr/bin/sg", b"sg", mode=0o2755, uid=0, gid=50)
    b.hardlink("usr/bin/tool-again", "usr/bin/tool")
    b.symlink("usr/bin/rel", "tool")
    b.symlink("bin", "usr/bin")
    b.dir("tmp", mode=0o1777)
    b.dir("home", mtime=900)
    b.dir("home/user", mtime=901)
    b.dir("home/user/" + "long-" * 30, mode=0o700, uid=1000, gid=1000, mtime=1500)
    b.file("home/user/" + "long-" * 30 + "/f", b"deep", uid=1000, gid=1000)
    b.dir("run", mtime=902)
    b.fifo("run/fifo", mode=0o620)
    b.dir("etc", mtime=903)
    b.file("etc/empty", b"", mode=0o600, mtime=1)
    b.dir("dev", mtime=904)
    b.device("dev/null", 1, 3, mode=0o666)
    b.dir("many", mtime=905)
    for i in range(50):
        b.file(f"many/{i:03d}", os.urandom(i * 37), mode=0o644, uid=i, gid=i, mtime=MTIME + i)
    return b.data()


@root_only
@needs_gnu_tar
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_same_result_as_gnu_tar(layer, tar_builder, tmp_path, fmt, snapshot):
    data = _rich_archive(tar_builder, fmt)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(
        ["tar", "-C", str(gnu), "--same-owner", "--numeric-owner", "-xpf", "-"],
        input=data,
        check=True,
    )
    layer.unpack(data, chown=True)
    ours, theirs = layer.tree(), snapshot(gnu)
    assert ours.keys() == theirs.keys()
    for path in ours:
        assert ours[path] == theirs[path], path
    assert os.lstat(layer.root).st_mode == os.lstat(gnu).st_mode


@root_only
@needs_gnu_tar
def test_gnu_tar_created_archive(layer, tmp_path, snapshot):
    """An archive GNU tar made from a real tree (its own header choices)."""
    src = tmp_path / "src"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/file").write_bytes(b"content")
    os.symlink("b/file", src / "a/link")
    os.link(src / "a/b/file", src / "a/hard")
    (src / ("x" * 200)).write_bytes(b"long")
    os.chmod(src / "a/b", 0o751)
    archive = subprocess.run(
        ["tar", "-C", str(src), "-cf", "-", "."], check=True, capture_output=True
    ).stdout
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(["tar", "-C", str(gnu), "-xpf", "-"], input=archive, check=True)
    layer.unpack(archive, chown=True)
    assert snapshot(gnu) == layer.tree()
