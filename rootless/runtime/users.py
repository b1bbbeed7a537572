"""Resolve `--user` against the container's own /etc/passwd and /etc/group.

The files are opened below the rootfs without following links out of it.
"""

from __future__ import annotations

import os

from rootless.errors import ContainerError


class User:
    __slots__ = ("uid", "gid", "groups", "home", "name")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str, name: str | None) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
        self.name = name


def read_in_root(rootfs: str, path: str, limit: int = 4 << 20) -> str | None:
    """Read a small text file below `rootfs`, or None when it does not exist."""
    from rootless.native import lib

    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = lib.rl_openat_in_root(rootfd, path.encode(), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    finally:
        os.close(rootfd)
    if fd < 0:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def read_in_layers(layers_top_down: list[str], path: str) -> str | None:
    """Read `path` as an overlay of these layer directories would show it."""
    from rootless.overlay.view import LayerView

    found = LayerView(layers_top_down).lookup(path)
    if found is None:
        return None
    import stat

    if not stat.S_ISREG(found[1].st_mode):
        return None
    try:
        return read_in_root(found[0], path)
    except OSError:
        return None


def _entries(text: str | None, fields: int) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        if line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            out.append(parts)
    return out


def _to_int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def resolve(rootfs: str, spec: str | None, layers: list[str] | None = None) -> User:
    """Resolve "user[:group]" (names or numbers) like docker does. With `layers`
    (an overlay's upper and lower dirs, top down) the files are read through them,
    since the overlay itself is only mounted inside the container."""

    def read(path: str) -> str | None:
        return read_in_layers(layers, path) if layers else read_in_root(rootfs, path)

    passwd = _entries(read("etc/passwd"), 7)
    user_part, _, group_part = (spec or "0").partition(":")
    entry = None
    uid = _to_int(user_part)
    for p in passwd:
        if (uid is None and p[0] == user_part) or (uid is not None and _to_int(p[2]) == uid):
            entry = p
            break
    if entry is None and uid is None:
        raise ContainerError(f"unable to find user {user_part}: no matching entries in passwd file")
    if entry is not None:
        uid = _to_int(entry[2])
        if uid is None:
            raise ContainerError(f"invalid uid in the container's /etc/passwd for {user_part}")
    assert uid is not None
    gid = _to_int(entry[3]) if entry is not None else 0
    home = entry[5] if entry is not None and entry[5] else ("/root" if uid == 0 else "/")
    name = entry[0] if entry is not None else None
    groups_text = read("etc/group")
    group_entries = _entries(groups_text, 4)
    if group_part:
        gid = _to_int(group_part)
        if gid is None:
            match = [g for g in group_entries if g[0] == group_part]
            if not match or _to_int(match[0][2]) is None:
                raise ContainerError(f"unable to find group {group_part}: no matching entries in group file")
            gid = _to_int(match[0][2])
    assert gid is not None
    groups: list[int] = []
    if name is not None:
        for g in group_entries:
            members = g[3].split(",") if g[3] else []
            gnum = _to_int(g[2])
            if name in members and gnum is not None and gnum != gid and gnum not in groups:
                groups.append(gnum)
    return User(uid, gid, groups, home, name)
