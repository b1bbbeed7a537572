"""rl_untar against hostile archives: nothing may be written outside the root.

Every test unpacks next to an `outside` directory holding a secret file (and
names absolute paths that exist on the host); afterwards nothing beside the root
may have changed, whether the unpack succeeded or was refused with an error.
"""

from __future__ import annotations

import os
import stat
import uuid

import pytest

from rootless.native import NativeError


def unpack_maybe(layer, data, **kw):
    """Unpack; a refusal (NativeError) is as good as a neutralized member here."""
    try:
        return layer.unpack(data, **kw)
    except NativeError:
        return None


def test_dotdot_names_stay_inside(layer, tar_builder):
    data = (
        tar_builder()
        .file("../escape1", b"x")
        .file("../../../../../../../../../tmp/escape2", b"x")
        .file("a/../../escape3", b"x")
        .file("./b/./c/../d", b"x")
        .data()
    )
    layer.unpack(data)
    r = layer.root
    assert (r / "escape1").exists() and (r / "tmp/escape2").exists() and (r / "escape3").exists()
    assert (r / "b/d").exists()
    assert layer.outside_untouched()


def test_absolute_names_stay_inside(layer, tar_builder):
    target = str(layer.outside / "abs-file")
    layer.unpack(tar_builder().file(target, b"x").file("/etc/rl-abs", b"y").data())
    assert (layer.root / target.lstrip("/")).read_bytes() == b"x"
    assert (layer.root / "etc/rl-abs").exists() and not os.path.exists("/etc/rl-abs")
    assert layer.outside_untouched()


@pytest.mark.parametrize("target", ["/", "../../../../..", "OUTSIDE", "../outside"])
def test_symlink_then_file_through_it(layer, tar_builder, target):
    target = str(layer.outside) if target == "OUTSIDE" else target
    marker = f"rl-untar-escape-{uuid.uuid4().hex}"
    data = tar_builder().symlink("link", target).file(f"link/{marker}", b"pwned").data()
    unpack_maybe(layer, data)
    assert not os.path.exists(f"/{marker}")
    assert not os.path.exists(layer.outside / marker)
    assert not os.path.exists(layer.base / marker)
    assert layer.outside_untouched()
    if target in ("/", "../../../../.."):  # resolved inside the root, as if chrooted
        assert (layer.root / marker).read_bytes() == b"pwned"


def test_symlink_then_directory_through_it(layer, tar_builder):
    marker = f"rl-untar-escape-{uuid.uuid4().hex}"
    data = (
        tar_builder()
        .symlink("link", "/")
        .dir(f"link/{marker}")
        .file(f"link/{marker}/f", b"x")
        .symlink("up", "../..")
        .dir(f"up/{marker}-2")
        .data()
    )
    unpack_maybe(layer, data)
    assert not os.path.exists(f"/{marker}") and not os.path.exists(f"/{marker}-2")
    assert (layer.root / marker / "f").exists()
    assert (layer.root / f"{marker}-2").is_dir()
    assert layer.outside_untouched()


def test_symlink_from_an_earlier_layer(layer, tar_builder):
    os.symlink(str(layer.outside), layer.root / "etc")
    os.symlink("../outside", layer.root / "rel")
    unpack_maybe(layer, tar_builder().file("etc/secret", b"pwned").data())
    unpack_maybe(layer, tar_builder().file("rel/secret", b"pwned").dir("rel/newdir").data())
    assert (layer.outside / "secret").read_bytes() == b"secret\n"
    assert layer.outside_untouched()


def test_member_replacing_a_symlink_does_not_write_through(layer, tar_builder):
    data = (
        tar_builder()
        .symlink("s1", str(layer.outside / "secret"))
        .file("s1", b"pwned")
        .symlink("s2", "../outside/secret")
        .fifo("s2")
        .symlink("s3", str(layer.outside))
        .dir("s3")
        .file("s3/secret", b"pwned")
        .data()
    )
    layer.unpack(data)
    r = layer.root
    assert not os.path.islink(r / "s1") and (r / "s1").read_bytes() == b"pwned"
    assert stat.S_ISFIFO(os.lstat(r / "s2").st_mode)
    assert (r / "s3").is_dir() and not os.path.islink(r / "s3")
    assert layer.outside_untouched()


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside/secret", "OUTSIDE"])
def test_hardlink_to_outside_refused(layer, tar_builder, target):
    target = str(layer.outside / "secret") if target == "OUTSIDE" else target
    before = os.stat("/etc/passwd").st_nlink
    with pytest.raises(NativeError):
        layer.unpack(tar_builder().hardlink("h", target).data())
    assert not os.path.lexists(layer.root / "h")
    assert os.stat("/etc/passwd").st_nlink == before
    assert os.stat(layer.outside / "secret").st_nlink == 1
    assert layer.outside_untouched()


def test_hardlink_through_escaping_symlink(layer, tar_builder):
    data = tar_builder().symlink("d", str(layer.outside)).hardlink("h", "d/secret").data()
    with pytest.raises(NativeError):
        layer.unpack(data)
    assert os.stat(layer.outside / "secret").st_nlink == 1
    assert layer.outside_untouched()


def test_hardlink_to_escaping_symlink_links_the_symlink_only(layer, tar_builder):
    data = (
        tar_builder()
        .symlink("s", str(layer.outside / "secret"))
        .hardlink("h", "s")
        .file("h", b"w")
        .data()
    )
    layer.unpack(data)
    assert (layer.outside / "secret").read_bytes() == b"secret\n"
    assert os.stat(layer.outside / "secret").st_nlink == 1
    assert os.path.islink(layer.root / "s")
    assert layer.outside_untouched()


def test_hardlink_to_itself_through_symlinked_dir(layer, tar_builder):
    data = (
        tar_builder()
        .file("x", b"keep")
        .symlink("a", ".")
        .hardlink("a/x", "x")
        .hardlink("x", "x")
        .data()
    )
    layer.unpack(data)
    assert (layer.root / "x").read_bytes() == b"keep"


def test_whiteouts_cannot_escape(layer, tar_builder):
    os.symlink(str(layer.outside), layer.root / "link")
    data = (
        tar_builder()
        .file("../.wh.outside")
        .file("link/.wh.secret")
        .file("link/.wh..wh..opq")
        .file(".wh..")
        .data()
    )
    unpack_maybe(layer, data)
    unpack_maybe(layer, data, overlay=True)
    assert layer.outside_untouched()


def test_overlay_whiteout_in_symlinked_parent(layer, tar_builder):
    os.symlink(str(layer.outside), layer.root / "link")
    unpack_maybe(layer, tar_builder().file("link/.wh.secret").data(), overlay=True)
    unpack_maybe(
        layer, tar_builder().file("link/.wh..wh..opq").data(), overlay=True, userxattr=True
    )
    assert layer.outside_untouched()


def test_devices_neutralized(layer, tar_builder):
    data = tar_builder().device("mem", 1, 1).device("sda", 8, 0, block=True).data()
    stats = layer.unpack(data, no_devices=True)
    assert stats.devices_skipped == 2
    assert os.listdir(layer.root) == []


@pytest.mark.parametrize("cut", [700, 1100, 1536])
def test_truncated_hostile_archive(layer, tar_builder, cut):
    data = tar_builder().symlink("l", str(layer.outside)).file("l/secret", b"x" * 3000).data()
    with pytest.raises(NativeError):
        layer.unpack(data[:cut])
    assert layer.outside_untouched()


def test_garbage_is_refused(layer):
    with pytest.raises(NativeError):
        layer.unpack(os.urandom(4096))
    with pytest.raises(NativeError):
        layer.unpack(b"")
    assert layer.outside_untouched()


def test_huge_pax_header_refused(layer, tar_builder):
    data = tar_builder().file("f", pax={"comment": "x" * (17 << 20)}).data()
    with pytest.raises(NativeError, match="too large"):
        layer.unpack(data)


def test_nul_and_long_components(layer, tar_builder):
    with pytest.raises(NativeError):
        layer.unpack(tar_builder().file("a/" + "c" * 300, b"x").data())
    assert layer.outside_untouched()
