"""Choose and apply the user-namespace id mapping.

Three modes, chosen automatically:

- ``root``: the caller is host root; ids map 1:1 (written directly).
- ``full``: the caller has ranges in /etc/subuid and /etc/subgid and the distro's
  setuid helpers newuidmap/newgidmap exist: container 0 is the caller, 1..N are the
  range, so chown, su and apt's _apt user work.
- ``single``: otherwise one container id maps to the caller (written directly,
  setgroups denied). That id is 0, or the requested --user id, or the caller's own
  with --userns=keep-id.
"""

from __future__ import annotations

import os

from rootless.errors import UnsupportedHostError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

IdMap = tuple[int, int, int]  # (inside, outside, count)
FULL_RANGE = 4294967295
HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


def read_subid_ranges(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges of `user` (by name or uid) in an /etc/subuid-style file."""
    ranges: list[tuple[int, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ranges
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def find_helper(name: str) -> str | None:
    for d in HELPER_DIRS:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


class IdMapping:
    """A resolved mapping plan for one container."""

    __slots__ = ("mode", "uid_map", "gid_map", "setgroups", "container_uid", "container_gid")

    def __init__(
        self,
        mode: str,
        uid_map: list[IdMap],
        gid_map: list[IdMap],
        setgroups: bool,
        container_uid: int,
        container_gid: int,
    ) -> None:
        self.mode = mode
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.setgroups = setgroups
        self.container_uid = container_uid
        self.container_gid = container_gid

    def describe(self) -> str:
        def fmt(m: list[tuple[int, int, int]]) -> str:
            return " ".join("%d:%d:%d" % t for t in m)

        return f"{self.mode} mapping, uid_map [{fmt(self.uid_map)}] gid_map [{fmt(self.gid_map)}]"

    def maps_uid(self, uid: int) -> bool:
        return any(i <= uid < i + n for i, _, n in self.uid_map)

    def maps_gid(self, gid: int) -> bool:
        return any(i <= gid < i + n for i, _, n in self.gid_map)


def _ranged(host_id: int, ranges: Sequence[tuple[int, int]], keep_id: bool) -> list[IdMap]:
    """Caller's id at 0 (or at itself with keep-id), subordinate ranges filling the rest."""
    if not keep_id or host_id == 0:
        out: list[IdMap] = [(0, host_id, 1)]
        inside = 1
        for start, count in ranges:
            out.append((inside, start, count))
            inside += count
        return out
    out = [(host_id, host_id, 1)]
    inside = 0
    for start, count in ranges:
        # Fill [0, host_id) first, then continue above host_id.
        if inside < host_id:
            first = min(count, host_id - inside)
            out.append((inside, start, first))
            inside += first
            start, count = start + first, count - first
            if inside == host_id:
                inside += 1
        if count > 0:
            out.append((inside, start, count))
            inside += count
    return out


def plan(keep_id: bool = False, want_uid: int | None = None, want_gid: int | None = None) -> IdMapping:
    """Choose the mapping for the calling user."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        full = [(0, 0, FULL_RANGE)]
        return IdMapping("root", full, list(full), True, 0, 0)
    if os.environ.get("ROOTLESS_IDMAP") != "single":
        name = _user_name(uid)
        subuids = read_subid_ranges("/etc/subuid", name, uid)
        subgids = read_subid_ranges("/etc/subgid", name, uid)
        if subuids and subgids and find_helper("newuidmap") and find_helper("newgidmap"):
            cuid, cgid = (uid, gid) if keep_id else (0, 0)
            return IdMapping(
                "full", _ranged(uid, subuids, keep_id), _ranged(gid, subgids, keep_id), True, cuid, cgid
            )
    cuid = uid if keep_id else (want_uid if want_uid is not None else 0)
    cgid = gid if keep_id else (want_gid if want_gid is not None else 0)
    return IdMapping("single", [(cuid, uid, 1)], [(cgid, gid, 1)], False, cuid, cgid)


def _spawn_helper(helper: str, pid: int, maps: Sequence[IdMap]) -> tuple[int, int]:
    path = find_helper(helper)
    if path is None:
        raise UnsupportedHostError(f"{helper} not found", hint="install the uidmap package")
    argv = [helper, str(pid)]
    for inside, outside, count in maps:
        argv += [str(inside), str(outside), str(count)]
    rfd, wfd = os.pipe()
    try:
        child = os.posix_spawn(
            path, argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            file_actions=[(os.POSIX_SPAWN_DUP2, wfd, 2), (os.POSIX_SPAWN_DUP2, wfd, 1)],
        )
    finally:
        os.close(wfd)
    return child, rfd


def _finish_helper(helper: str, child: int, rfd: int) -> None:
    with os.fdopen(rfd, "rb") as f:
        output = f.read().decode("utf-8", "replace").strip()
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise UnsupportedHostError(
            f"{helper} failed: {output.splitlines()[-1] if output else 'exit status %d' % status}",
            hint="check this user's ranges in /etc/subuid and /etc/subgid (see docs/rootless-setup.md)",
        )


def apply(mapping: IdMapping, pid: int) -> None:
    """Write the maps of the waiting child `pid`."""
    if mapping.mode != "full":
        from rootless.native.spawn import set_idmap

        set_idmap(pid, mapping.uid_map, mapping.gid_map, deny_setgroups=not mapping.setgroups)
        return
    finish(start(mapping, pid))


Pending = list[tuple[str, int, int]]


def start(mapping: IdMapping, pid: int) -> Pending:
    """Start newuidmap and newgidmap side by side (full mapping); `finish` waits."""
    return [("newuidmap", *_spawn_helper("newuidmap", pid, mapping.uid_map)),
            ("newgidmap", *_spawn_helper("newgidmap", pid, mapping.gid_map))]


def finish(pending: Pending) -> None:
    errors = []
    for name, child, rfd in pending:
        try:
            _finish_helper(name, child, rfd)
        except UnsupportedHostError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
