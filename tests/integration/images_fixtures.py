"""Images the pull/images tests build and push (imported by those test modules).

`build_all(workdir, registry_host)` makes an OCI layout with:
  rich:v1    three layers (gzip from GNU tar of a real tree; gzip tarfile layer with
             whiteouts and an opaque directory; an uncompressed layer)
  zstd:v1    a zstd layer on a gzip layer
  multi:v1   an index for linux/amd64 and linux/arm64/v8
  small:v1   one small gzip layer (shares nothing)
and pushes them to the registry as test/<name>:v1.

`merged_tree(layer_dirs, owner)` applies overlay semantics to our layer
directories; `umoci_tree(rootfs)` reads an `umoci unpack --rootless` tree. Both
return {path: (type, mode, owner, size, link target, content sha256, xattrs)}.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from helpers.images import BuiltImage, Layout, TarEntry, gnu_tar_layer, layer_tar, push

Info = tuple[str, int, tuple[int, int], int, str, str, tuple[tuple[str, bytes], ...]]
Owner = Callable[[str, os.stat_result], tuple[tuple[int, int], int]]
LONG = "d" * 120 + "/" + "f" * 200


@dataclass
class Built:
    layout: Layout
    rich: BuiltImage
    zstd: BuiltImage
    amd64: BuiltImage
    arm64: BuiltImage
    small: BuiltImage
    host: str

    def ref(self, name: str) -> str:
        return f"{self.host}/test/{name}:v1"


def _rich_tree(root: str) -> None:
    os.makedirs(f"{root}/etc/conf.d")
    os.makedirs(f"{root}/usr/bin")
    os.makedirs(f"{root}/var/lib/app")
    os.makedirs(f"{root}/opaque/sub")
    os.makedirs(f"{root}/{os.path.dirname(LONG)}")
    with open(f"{root}/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    with open(f"{root}/etc/shadow", "w") as f:
        f.write("root:*:19000::::::\n")
    os.chmod(f"{root}/etc/shadow", 0o640)
    os.chown(f"{root}/etc/shadow", 0, 42)
    with open(f"{root}/usr/bin/su", "wb") as f:
        f.write(b"\x7fELF" + os.urandom(5000))
    os.chmod(f"{root}/usr/bin/su", 0o4755)
    with open(f"{root}/usr/bin/wall", "wb") as f:
        f.write(b"wall")
    os.chmod(f"{root}/usr/bin/wall", 0o2755)
    os.chown(f"{root}/usr/bin/wall", 0, 5)
    os.link(f"{root}/usr/bin/su", f"{root}/usr/bin/su-hardlink")
    os.symlink("su", f"{root}/usr/bin/su-link")
    os.symlink("/etc/passwd", f"{root}/etc/passwd-abs")
    os.symlink("../../nowhere", f"{root}/etc/dangling")
    with open(f"{root}/var/lib/app/data", "wb") as f:
        f.write(os.urandom(70000))
    os.chown(f"{root}/var/lib/app/data", 1000, 1000)
    os.chown(f"{root}/var/lib/app", 1000, 1000)
    os.chmod(f"{root}/var/lib/app", 0o700)
    with open(f"{root}/var/sparse", "wb") as f:
        f.seek(8 << 20)
        f.write(b"end of a sparse file")
    with open(f"{root}/{LONG}", "w") as f:
        f.write("long name\n")
    with open(f"{root}/etc/xattr", "w") as f:
        f.write("has xattrs\n")
    os.setxattr(f"{root}/etc/xattr", "user.comment", b"hello world")
    with open(f"{root}/etc/nobody", "w") as f:
        f.write("no permissions\n")
    os.chmod(f"{root}/etc/nobody", 0)
    for name in ("a", "b"):
        with open(f"{root}/opaque/{name}", "w") as f:
            f.write(name)
    with open(f"{root}/opaque/sub/c", "w") as f:
        f.write("c")
    with open(f"{root}/etc/conf.d/gone", "w") as f:
        f.write("deleted by the next layer\n")
    os.mkfifo(f"{root}/var/fifo")
    os.chmod(f"{root}/var/fifo", 0o600)


def _rich_layers(work: str) -> list[tuple[bytes, str]]:
    tree = os.path.join(work, "rich-tree")
    _rich_tree(tree)
    first = gnu_tar_layer(tree)
    shutil.rmtree(tree)
    second = layer_tar([
        TarEntry("etc", "dir"),
        TarEntry("etc/conf.d", "dir"),
        TarEntry("etc/conf.d/.wh.gone"),
        TarEntry("etc/passwd-abs", data=b"now a file\n"),
        TarEntry("opaque", "dir", mode=0o750),
        TarEntry("opaque/.wh..wh..opq"),
        TarEntry("opaque/new", data=b"only me\n", uid=1000, gid=1000),
        TarEntry("usr", "dir"),
        TarEntry("usr/bin", "dir"),
        TarEntry("usr/bin/.wh.wall"),
        TarEntry("var", "dir"),
        TarEntry("var/lib", "dir"),
        TarEntry("var/lib/app", "dir", mode=0o700, uid=1000, gid=1000),
        TarEntry("var/lib/app/more", data=b"x" * 3000, uid=33, gid=33, mode=0o600),
    ])  # fmt: skip
    third = layer_tar([
        TarEntry("etc", "dir"),
        TarEntry("etc/motd", data=b"welcome\n"),
        TarEntry("etc/hardlinked", data=b"linked\n"),
        TarEntry("etc/hardlinked-too", "hardlink", target="etc/hardlinked"),
    ])  # fmt: skip
    return [(first, "gzip"), (second, "gzip"), (third, "none")]


def build_all(work: str, host: str) -> Built:
    layout = Layout(os.path.join(work, "layout"))
    rich = layout.image(_rich_layers(work), cmd=["/usr/bin/su"])
    layout.tag("rich", rich.manifest)
    base = layer_tar([TarEntry("bin", "dir"), TarEntry("bin/tool", data=b"tool\n" * 50, mode=0o755)])
    top = layer_tar([TarEntry("z", data=b"zstd layer\n" * 200)])
    zstd = layout.image([(base, "gzip"), (top, "zstd")])
    layout.tag("zstd", zstd.manifest)
    amd64 = layout.image([(layer_tar([TarEntry("arch", data=b"amd64\n")]), "gzip")])
    arm64 = layout.image(
        [(layer_tar([TarEntry("arch", data=b"arm64\n")]), "gzip")], platform=("linux", "arm64", "v8")
    )
    layout.tag("multi", layout.index([amd64, arm64]), "application/vnd.oci.image.index.v1+json")
    small = layout.image([(layer_tar([TarEntry("hello", data=b"hi\n")]), "gzip")])
    layout.tag("small", small.manifest)
    built = Built(layout, rich, zstd, amd64, arm64, small, host)
    for name in ("rich", "zstd", "small"):
        push(layout, name, built.ref(name))
    push(layout, "multi", built.ref("multi"), "--all")
    return built


# ---------------------------------------------------------------- trees


def _kind(st: os.stat_result) -> str:
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"), (stat.S_ISREG, "file"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk")):  # fmt: skip
        if test(st.st_mode):
            return name
    return "other"


def _content(path: str, st: os.stat_result) -> str:
    if not stat.S_ISREG(st.st_mode):
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    keep = [n for n in names if n.startswith("user.") and not n.startswith(
        ("user.overlay.", "user.containers.", "user.rootlesscontainers"))]  # fmt: skip
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in keep))


def _info(path: str, st: os.stat_result, owner: Owner) -> Info:
    kind = _kind(st)
    ids, mode = owner(path, st)
    return (
        kind,
        0 if kind == "symlink" else mode,
        ids,
        st.st_size if kind == "file" else 0,
        os.readlink(path) if kind == "symlink" else "",
        _content(path, st),
        _xattrs(path),
    )


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _drop_below(tree: dict[str, Info], rel: str) -> None:
    prefix = rel + "/"
    for key in [k for k in tree if k.startswith(prefix)]:
        del tree[key]


def merged_tree(layer_dirs: list[str], owner: Owner) -> dict[str, Info]:
    """Overlay semantics over our layers, lowest first."""
    tree: dict[str, Info] = {}
    for top in layer_dirs:
        for root, dirs, files in os.walk(top):
            for name in sorted(dirs + files):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, top)
                st = os.lstat(path)
                if _is_whiteout(st):
                    tree.pop(rel, None)
                    _drop_below(tree, rel)
                    continue
                if not stat.S_ISDIR(st.st_mode) or _opaque(path):
                    _drop_below(tree, rel)
                tree[rel] = _info(path, st, owner)
    return tree


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "user.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def umoci_tree(rootfs: str) -> dict[str, Info]:
    def owner(path: str, st: os.stat_result) -> tuple[tuple[int, int], int]:
        return _rootlesscontainers(path), st.st_mode & 0o7777

    tree: dict[str, Info] = {}
    for root, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            path = os.path.join(root, name)
            tree[os.path.relpath(path, rootfs)] = _info(path, os.lstat(path), owner)
    return tree


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _rootlesscontainers(path: str) -> tuple[int, int]:
    """umoci's user.rootlesscontainers protobuf: field 1 uid, field 2 gid (absent: 0)."""
    try:
        data = os.getxattr(path, "user.rootlesscontainers", follow_symlinks=False)
    except OSError:
        return (0, 0)
    ids = {1: 0, 2: 0}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        value, i = _varint(data, i)
        ids[key >> 3] = 0 if value == 0xFFFFFFFF else value  # NoopID: unchanged (0)
    return ids[1], ids[2]


def owner_for(identity: str, uid: int, sub_start: int, gid: int, subgid_start: int) -> Owner:
    """How to read the container's owner and mode from our layer files."""

    def root(path: str, st: os.stat_result) -> tuple[tuple[int, int], int]:
        return (st.st_uid, st.st_gid), st.st_mode & 0o7777

    def sub(path: str, st: os.stat_result) -> tuple[tuple[int, int], int]:
        u = 0 if st.st_uid == uid else st.st_uid - sub_start + 1
        g = 0 if st.st_gid == gid else st.st_gid - subgid_start + 1
        return (u, g), st.st_mode & 0o7777

    def nosub(path: str, st: os.stat_result) -> tuple[tuple[int, int], int]:
        try:
            text = os.getxattr(path, "user.containers.override_stat", follow_symlinks=False)
        except OSError:
            return (0, 0), st.st_mode & 0o7777
        u, g, mode = text.decode().split(":")[:3]
        return (int(u), int(g)), int(mode, 8) & 0o7777

    return {"root": root, "sub": sub, "nosub": nosub}[identity]


def umoci_unpack(layout: Layout, tag: str, dest: str) -> str:
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout.path}:{tag}", dest],
                   check=True, capture_output=True)  # fmt: skip
    return os.path.join(dest, "rootfs")
