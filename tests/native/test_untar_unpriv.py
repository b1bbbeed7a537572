"""rl_untar as an unprivileged user (uid 65534 via setpriv, no user namespace).

OVERRIDE_STAT keeps the files the caller's and records the archive's owner and
mode in user.containers.override_stat; overlay whiteouts fall back to what
fuse-overlayfs reads when mknod and trusted.* xattrs are refused.
"""

from __future__ import annotations

import errno
import os
import stat

NOBODY = 65534


def xattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def test_override_stat(as_nobody, tar_builder):
    data = (
        tar_builder()
        .dir("bin", mode=0o755, uid=0, gid=0)
        .file("bin/su", b"x", mode=0o4755, uid=0, gid=0)
        .file("bin/ro", b"x", mode=0o400, uid=12, gid=34)
        .dir("secret", mode=0o000, uid=5, gid=6)
        .file("secret/f", b"hidden", mode=0o000)
        .symlink("bin/link", "su", uid=7, gid=8)
        .fifo("fifo", mode=0o640)
        .device("null", 1, 3, mode=0o666)
        .data()
    )
    result = as_nobody.unpack(data, override_stat=True, overlay=True, userxattr=True)
    assert "errno" not in result, result
    r = as_nobody.root
    st = os.lstat(r / "bin/su")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(st.st_mode) == 0o755, "setuid stays in the xattr, not on disk"
    assert xattr(r / "bin/su", "user.containers.override_stat") == b"0:0:04755:file"
    assert stat.S_IMODE(os.lstat(r / "bin/ro").st_mode) == 0o600
    assert xattr(r / "bin/ro", "user.containers.override_stat") == b"12:34:0400:file"
    assert xattr(r / "bin", "user.containers.override_stat") == b"0:0:0755:dir"
    assert stat.S_IMODE(os.lstat(r / "secret").st_mode) == 0o700
    assert xattr(r / "secret", "user.containers.override_stat") == b"5:6:00:dir"
    assert (r / "secret/f").read_bytes() == b"hidden"
    assert os.readlink(r / "bin/link") == "su"
    assert stat.S_ISFIFO(os.lstat(r / "fifo").st_mode)
    # no mknod outside a user namespace: an empty placeholder carries the device
    st = os.lstat(r / "null")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert xattr(r / "null", "user.containers.override_stat") == b"0:0:0666:char-1-3"
    assert result["devices_skipped"] == 1


def test_whiteout_fallbacks(as_nobody, tar_builder):
    data = (
        tar_builder()
        .dir("etc")
        .file("etc/.wh.removed")
        .dir("opq")
        .file("opq/.wh..wh..opq")
        .dir("uopq")
        .data()
    )
    result = as_nobody.unpack(data, override_stat=True, overlay=True)
    assert "errno" not in result, result
    r = as_nobody.root
    # Linux >= 5.8 lets anyone mknod a 0:0 whiteout; where it is refused the
    # AUFS-style .wh. file stays instead (fuse-overlayfs reads it)
    if os.path.lexists(r / "etc/removed"):
        st = os.lstat(r / "etc/removed")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert not os.path.lexists(r / "etc/.wh.removed")
    else:
        assert (r / "etc/.wh.removed").is_file()
    # trusted.overlay.opaque is refused: the marker file stays (fuse-overlayfs reads it)
    assert (r / "opq/.wh..wh..opq").is_file()
    assert result["whiteouts"] == 2


def test_user_opaque_xattr(as_nobody, tar_builder):
    data = tar_builder().dir("opq").file("opq/.wh..wh..opq").data()
    result = as_nobody.unpack(data, overlay=True, userxattr=True)
    assert "errno" not in result, result
    assert xattr(as_nobody.root / "opq", "user.overlay.opaque") == b"y"
    assert not os.path.lexists(as_nobody.root / "opq/.wh..wh..opq")


def test_chown_refused_without_privilege(as_nobody, tar_builder):
    result = as_nobody.unpack(tar_builder().file("f", uid=0).data(), chown=True)
    assert result["errno"] == errno.EPERM
    assert "f" in result["error"]


def test_flatten_into_readonly_lower_dirs(as_nobody, tar_builder):
    r = as_nobody.root
    lower = (
        tar_builder().dir("ro", mode=0o555).file("ro/old", b"o").dir("ro/sub", mode=0o500).data()
    )
    assert "errno" not in as_nobody.unpack(lower)
    upper = tar_builder().file("ro/.wh.sub").file("ro/.wh..wh..opq").file("ro/new", b"n").data()
    result = as_nobody.unpack(upper)
    assert "errno" not in result, result
    assert sorted(os.listdir(r / "ro")) == ["new"]


def test_security_xattrs_best_effort(as_nobody, tar_builder):
    pax = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.trusted.x": "1"}
    result = as_nobody.unpack(tar_builder().file("f", b"x", pax=pax).data())
    assert "errno" not in result, result
    assert result["xattrs_dropped"] == 2
    assert (as_nobody.root / "f").read_bytes() == b"x"
