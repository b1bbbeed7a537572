"""rl_untar against hostile layers, part 2: bombs, conflicting members, odd
whiteouts, absurd modes, setuid bits, hostile names and xattrs.

Like test_untar_safety.py, every test unpacks next to an `outside` directory and
checks that nothing beside the root changed; a refusal is a NativeError with a
one-line message.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from helpers.fs import xattr

from rootless.native import NativeError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, trusted xattrs)")


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, repr(text)
    return text


def sparse_pax(name: str, realsize: int, minor: int = 0) -> tuple[dict[str, str], bytes]:
    """PAX sparse 1.0 (the map in the data) or 0.1 (the map in the header) headers
    for a file of `realsize` apparent bytes holding no data at all."""
    if minor == 1:
        pax = {
            "GNU.sparse.major": "0",
            "GNU.sparse.minor": "1",
            "GNU.sparse.name": name,
            "GNU.sparse.size": str(realsize),
            "GNU.sparse.map": "0,0",
        }
        return pax, b""
    pax = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    return pax, b"1\n0\n0\n".ljust(512, b"\0")


# ------------------------------------------------------------------ bombs


@pytest.mark.parametrize("minor", [0, 1], ids=["pax-1.0", "pax-0.1"])
def test_huge_sparse_file_over_the_file_limit(layer, tar_builder, minor):
    pax, body = sparse_pax("huge", 1 << 50, minor)
    data = tar_builder().file("GNUSparseFile.0/huge", body, pax=pax).data()
    with pytest.raises(NativeError) as info:
        layer.unpack(data, max_file_size=1 << 30)
    assert info.value.errno == errno.EFBIG
    text = one_line(info.value)
    assert "huge: file of 1125899906842624 bytes is over the limit of 1073741824 bytes" in text
    assert not (layer.root / "huge").exists()
    assert layer.outside_untouched()


def test_sparse_file_under_the_limit_is_fine(layer, tar_builder):
    pax, body = sparse_pax("holes", 64 << 20)
    data = tar_builder().file("GNUSparseFile.0/holes", body, pax=pax).data()
    stats = layer.unpack(data, max_file_size=64 << 20, max_total_size=64 << 20)
    st = os.stat(layer.root / "holes")
    assert st.st_size == 64 << 20 and st.st_blocks == 0
    assert stats.sparse_files == 1


def test_plain_file_over_the_file_limit(layer, tar_builder):
    data = tar_builder().file("small", b"x" * 100).file("big", b"y" * 5000).data()
    with pytest.raises(NativeError, match="big: file of 5000 bytes is over the limit of 4096"):
        layer.unpack(data, max_file_size=4096)
    assert layer.outside_untouched()


def test_files_adding_up_over_the_layer_limit(layer, tar_builder):
    builder = tar_builder()
    for i in range(10):
        pax, body = sparse_pax(f"f{i}", 1 << 20)
        builder.file(f"GNUSparseFile.0/f{i}", body, pax=pax)
    with pytest.raises(NativeError) as info:
        layer.unpack(builder.data(), max_file_size=1 << 20, max_total_size=5 << 20)
    assert info.value.errno == errno.EFBIG
    assert "f5: the layer's files add up to more than the limit of 5242880 bytes" in one_line(
        info.value
    )
    assert layer.outside_untouched()


def test_no_limits_by_default(layer, tar_builder):
    stats = layer.unpack(tar_builder().file("a", b"x" * 10000).data())
    assert stats.bytes == 10000


# ------------------------------------------------------------------ conflicting members


def test_file_then_dir_then_symlink_then_file(layer, tar_builder):
    data = (
        tar_builder()
        .file("x", b"file")
        .dir("x")
        .file("x/inner", b"inner")
        .symlink("x", "../../../..")
        .file("x/through", b"pwned")  # through the symlink: inside the root
        .symlink("y", "../outside")
        .dir("y")
        .hardlink("z", "x")  # a hard link to the symlink itself
        .file("x", b"last")
        .data()
    )
    layer.unpack(data)
    r = layer.root
    assert (r / "x").read_bytes() == b"last" and not os.path.islink(r / "x")
    assert (r / "through").read_bytes() == b"pwned"
    assert (r / "y").is_dir() and not os.path.islink(r / "y")
    assert os.readlink(r / "z") == "../../../.."
    assert layer.outside_untouched()


@pytest.mark.parametrize("overlay", [False, True], ids=["flatten", "overlay"])
@pytest.mark.parametrize("target", ["/", "../..", "OUTSIDE"])
def test_directory_replaced_by_symlink_in_a_later_layer(layer, tar_builder, overlay, target):
    target = str(layer.outside) if target == "OUTSIDE" else target
    first = tar_builder().dir("d").file("d/keep", b"k").dir("d/sub").data()
    layer.unpack(first, overlay=overlay)
    second = (
        tar_builder()
        .symlink("d", target)
        .file("d/secret", b"pwned")
        .dir("d/newdir", mode=0o777)
        .hardlink("d/hl", "d/secret")
        .data()
    )
    try:
        layer.unpack(second, overlay=overlay)
    except NativeError as exc:  # a dangling link inside the root: refused
        assert target == str(layer.outside), exc
        one_line(exc)
    r = layer.root
    assert os.path.islink(r / "d")
    if target != str(layer.outside):
        assert (r / "secret").read_bytes() == b"pwned"
        assert (r / "newdir").is_dir() and (r / "hl").exists()
    assert (layer.outside / "secret").read_bytes() == b"secret\n"
    assert layer.outside_untouched()


def test_hardlink_to_symlink_kept_in_overlay_and_override_modes(layer, tar_builder):
    data = (
        tar_builder()
        .symlink("s", "/etc/shadow")
        .hardlink("h", "s")
        .symlink("d", "..")
        .hardlink("h2", "d")
        .data()
    )
    layer.unpack(data, overlay=True, override_stat=True, userxattr=True)
    r = layer.root
    assert os.readlink(r / "h") == "/etc/shadow" and os.readlink(r / "h2") == ".."
    assert os.lstat(r / "h").st_ino == os.lstat(r / "s").st_ino
    assert layer.outside_untouched()


# ------------------------------------------------------------------ whiteouts


@pytest.mark.parametrize("name", [".wh..", ".wh...", ".wh.", "a/.wh..."])
def test_whiteout_of_dot_names_refused(layer, tar_builder, name):
    for overlay in (False, True):
        with pytest.raises(NativeError, match="bad whiteout name"):
            layer.unpack(tar_builder().file(name).data(), overlay=overlay)
    assert layer.outside_untouched()


@pytest.mark.parametrize("overlay", [False, True], ids=["flatten", "overlay"])
def test_opaque_markers_in_odd_places(layer, tar_builder, overlay):
    (layer.root / "lower").mkdir()
    (layer.root / "lower/old").write_bytes(b"old")
    data = (
        tar_builder()
        .dir(".wh..wh..opq")  # an opaque marker that claims to be a directory
        .file("a/.wh..wh..opq/child", b"c")  # a marker used as a parent directory
        .symlink("lower/.wh..wh..opq", "/")  # a marker that is a symlink
        .file(".wh..wh..opq/..", b"x")  # cleaned to the root itself: skipped
        .file("b/.wh..wh..wh..opq")  # other AUFS metadata: skipped
        .data()
    )
    layer.unpack(data, overlay=overlay, userxattr=True)
    r = layer.root
    assert not os.path.islink(r / "lower/.wh..wh..opq")
    if overlay:
        assert xattr(r / "lower", "user.overlay.opaque") == b"y"
        assert (r / "lower/old").exists()
    else:
        assert not (r / "lower/old").exists()
    assert layer.outside_untouched()


def test_whiteout_of_the_directory_being_filled(layer, tar_builder):
    data = (
        tar_builder()
        .dir("d")
        .file("d/f", b"f")
        .file(".wh.d")  # a whiteout of the layer's own d: kept (flatten)
        .file("d/g", b"g")
        .data()
    )
    layer.unpack(data)
    assert sorted(os.listdir(layer.root / "d")) == ["f", "g"]
    assert layer.outside_untouched()


# ------------------------------------------------------------------ modes


@pytest.mark.parametrize(
    "mode_kw",
    [{}, {"override_stat": True}],
    ids=["plain", "override_stat"],
)
def test_absurd_directory_modes(layer, tar_builder, mode_kw):
    data = (
        tar_builder()
        .dir("all", mode=0o7777)
        .dir("none", mode=0)
        .dir("none/deeper", mode=0)
        .file("none/deeper/f", b"f", mode=0)
        .hardlink("none/h", "none/deeper/f")
        .dir("none", mode=0)  # listed again after its content
        .data()
    )
    layer.unpack(data, **mode_kw)
    r = layer.root

    def mode(p: str) -> int:
        return stat.S_IMODE(os.lstat(r / p).st_mode)

    if mode_kw:
        assert mode("all") == 0o777 and mode("none") == 0o700
        assert xattr(r / "all", "user.containers.override_stat") == b"0:0:07777:dir"
        assert xattr(r / "none", "user.containers.override_stat") == b"0:0:00:dir"
    else:
        assert mode("all") == 0o7777 and mode("none") == 0
    os.chmod(r / "none", 0o700)
    os.chmod(r / "none/deeper", 0o700)
    assert (r / "none/deeper/f").read_bytes() == b"f"
    assert layer.outside_untouched()


def test_absurd_modes_unprivileged(as_nobody, tar_builder):
    data = (
        tar_builder()
        .dir("none", mode=0)
        .dir("none/deeper", mode=0)
        .file("none/deeper/f", b"f", mode=0)
        .file("suid", b"#!/bin/sh\n", mode=0o6755)
        .dir("all", mode=0o7777)
        .data()
    )
    result = as_nobody.unpack(data, override_stat=True)
    assert "errno" not in result, result
    r = as_nobody.root
    assert not os.lstat(r / "suid").st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert xattr(r / "suid", "user.containers.override_stat") == b"0:0:06755:file"
    assert stat.S_IMODE(os.lstat(r / "none").st_mode) == 0o700


def test_setuid_bits_not_on_disk_without_chown(layer, tar_builder):
    data = (
        tar_builder()
        .file("suid", b"x", mode=0o4755)
        .file("sgid", b"x", mode=0o2755)
        .dir("sgiddir", mode=0o2775)
        .data()
    )
    layer.unpack(data, override_stat=True)
    r = layer.root
    for name in ("suid", "sgid", "sgiddir"):
        assert not os.lstat(r / name).st_mode & (stat.S_ISUID | stat.S_ISGID), name
    assert xattr(r / "suid", "user.containers.override_stat") == b"0:0:04755:file"


# ------------------------------------------------------------------ names


def test_path_longer_than_path_max_refused(layer, tar_builder):
    name = "/".join(["d" * 200] * 25)  # 5024 bytes, every component legal
    with pytest.raises(NativeError) as info:
        layer.unpack(tar_builder().file(name, b"x").data())
    assert "member name too long" in one_line(info.value)
    assert layer.outside_untouched()


def test_newlines_and_invalid_utf8_in_names(layer, tar_builder):
    names = ["new\nline", "tab\there", "bad-\udcff-utf8", "cr\rret", "esc\x1b[31m"]
    builder = tar_builder()
    for name in names:
        builder.file(name, b"x").symlink(name + "-link", name)
    builder.dir("dir\nwith/newline\n")
    layer.unpack(builder.data())
    listing = set(os.listdir(os.fsencode(layer.root)))
    for name in names:
        assert os.fsencode(name) in listing
    assert (layer.root / "dir\nwith/newline\n").is_dir()


def test_error_messages_stay_on_one_line(layer, tar_builder):
    data = tar_builder().hardlink("evil\nname\rx", "missing\ntarget").data()
    with pytest.raises(NativeError) as info:
        layer.unpack(data)
    text = one_line(info.value)
    assert "evil?name?x" in text


# ------------------------------------------------------------------ xattrs


FORGED = {
    "SCHILY.xattr.trusted.overlay.opaque": "y",
    "SCHILY.xattr.trusted.overlay.whiteout": "y",
    "SCHILY.xattr.trusted.overlay.redirect": "/etc",
    "SCHILY.xattr.trusted.other": "1",
    "SCHILY.xattr.user.overlay.opaque": "y",
    "SCHILY.xattr.user.overlay.whiteout": "y",
    "SCHILY.xattr.user.overlay.metacopy": "",
    "SCHILY.xattr.user.containers.override_stat": "0:0:04755:file",
    "SCHILY.xattr.user.containers.anything": "x",
    "SCHILY.xattr.user.fuseoverlayfs.origin": "x",
    "SCHILY.xattr.security.fuseoverlayfs.override_stat": "0:0:04755:file",
    "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\xff\xff\xff\xff",
    "SCHILY.xattr.user.kept": "ok",
}


@root_only
@pytest.mark.parametrize(
    "kw",
    [{"chown": True}, {"override_stat": True}, {"chown": True, "overlay": True, "userxattr": True}],
    ids=["chown", "override_stat", "overlay"],
)
def test_forged_xattrs_dropped(layer, tar_builder, kw):
    data = (
        tar_builder()
        .file("f", b"x", mode=0o755, pax=FORGED)
        .dir("d", pax=FORGED)
        .file("g", b"y", pax={"SCHILY.xattr.user.kept": "global-less"})
        .data()
    )
    stats = layer.unpack(data, **kw)
    r = layer.root
    for name in ("f", "d"):
        attrs = set(os.listxattr(r / name, follow_symlinks=False))
        allowed = {"user.kept"} | (
            {"user.containers.override_stat"} if kw.get("override_stat") else set()
        )
        assert attrs <= allowed, (name, attrs)
        assert xattr(r / name, "user.kept") == b"ok"
    assert xattr(r / "f", "security.capability") is None
    if kw.get("override_stat"):
        assert xattr(r / "f", "user.containers.override_stat") == b"0:0:0755:file"
    assert stats.xattrs_dropped >= 2 * (len(FORGED) - 1)
    assert layer.outside_untouched()


@root_only
def test_forged_xattrs_in_a_global_header(layer):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=FORGED) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    layer.unpack(buf.getvalue(), chown=True)
    assert set(os.listxattr(layer.root / "f")) <= {"user.kept"}
