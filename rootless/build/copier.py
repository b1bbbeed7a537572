"""COPY, ADD and WORKDIR as layer tars, written straight from their sources.

No upper dir is written: the layer tar is made from the sources with the owner
the build asks for (`--chown`, else 0:0), the mode (`--chmod`, else the
source's), and the parent directories as the image below has them (so `COPY x
/tmp/` keeps /tmp 1777). The store's unpack then gives the files their owners in
each ownership mode: real owners (root), mapped container ids (subordinate
ranges), or `user.containers.override_stat` (no ranges) — the owner is recorded
in the layer either way, and survives push and pull.

This runs in a child inside the build's user namespace (`overlay.userns`), so
files of lower layers owned by subordinate ids can be read and `stat()` shows
container ids. Destinations are resolved through symlinks inside the image
(`/bin/x` with /bin -> usr/bin lands in usr/bin/x), never out of it.
"""

from __future__ import annotations

import copy
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

from rootless.overlay.view import LayerView
from rootless.overlay.whiteout import read_override

MAX_LINKS = 40


class CopyError(Exception):
    """A COPY that cannot be done (the builder turns it into a DockerfileError)."""


class Tree(Protocol):
    """A source of files: the build context, or another stage's/image's layers."""

    def lstat(self, rel: str) -> os.stat_result | None: ...
    def listdir(self, rel: str) -> list[str]: ...
    def host_path(self, rel: str) -> str: ...
    def mode_of(self, rel: str, st: os.stat_result) -> int: ...


class ViewTree:
    """The merged view of layer directories (topmost first), read-only."""

    def __init__(self, layers_top_down: list[str]) -> None:
        self.view = LayerView(layers_top_down)

    def _found(self, rel: str) -> tuple[str, os.stat_result] | None:
        if not rel:
            if not self.view.layers:
                return None
            return self.view.layers[0], os.lstat(self.view.layers[0])
        return self.view.lookup(rel)

    def lstat(self, rel: str) -> os.stat_result | None:
        found = self._found(rel)
        return found[1] if found else None

    def listdir(self, rel: str) -> list[str]:
        return sorted(self.view.listdir(rel))

    def host_path(self, rel: str) -> str:
        found = self._found(rel)
        if found is None:
            raise FileNotFoundError(rel)
        return os.path.join(found[0], rel) if rel else found[0]

    def override(self, rel: str, st: os.stat_result) -> tuple[int, int, int, str] | None:
        if stat.S_ISLNK(st.st_mode):
            return None
        try:
            fd = os.open(self.host_path(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return read_override(fd)
        finally:
            os.close(fd)

    def mode_of(self, rel: str, st: os.stat_result) -> int:
        ov = self.override(rel, st)
        return ov[2] if ov is not None else stat.S_IMODE(st.st_mode)

    def owner_of(self, rel: str, st: os.stat_result) -> tuple[int, int]:
        ov = self.override(rel, st)
        return (ov[0], ov[1]) if ov is not None else (st.st_uid, st.st_gid)

    def resolve(self, rel: str, follow_last: bool = False) -> str:
        """`rel` with symlinks in its directories (and at its end, when
        `follow_last`) resolved inside the root."""
        parts = [p for p in rel.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join([*done, part])
            st = self.lstat(cur)
            if st is not None and stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                hops += 1
                if hops > MAX_LINKS:
                    raise CopyError(f"too many levels of symbolic links in {rel}")
                target = os.readlink(self.host_path(cur))
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)


def _read_text(tree: ViewTree, rel: str) -> str:
    try:
        with open(tree.host_path(rel), "rb") as f:
            return f.read(4 << 20).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _table(text: str, fields: int) -> list[list[str]]:
    return [p for p in (line.split(":") for line in text.splitlines() if not line.startswith("#"))
            if len(p) >= fields]


def resolve_user(tree: ViewTree, spec: str) -> tuple[int, int, str]:
    """"user[:group]" (names or numbers) against the image's /etc/passwd and
    /etc/group -> (uid, gid, home); a lone user keeps its passwd group, a lone
    number uses itself as the group (docker's COPY --chown rule). LookupError
    when a name is unknown."""
    user, _, group = spec.partition(":")
    passwd = _table(_read_text(tree, tree.resolve("etc/passwd", follow_last=True)), 7) if tree.view.layers else []
    entry = next((p for p in passwd if p[0] == user or (user.isdigit() and p[2] == user)), None)
    if user.isdigit():
        uid = int(user)
    elif entry is not None and entry[2].isdigit():
        uid = int(entry[2])
    else:
        raise LookupError(f"no user {user!r} in the image's /etc/passwd")
    home = entry[5] if entry is not None else ""
    if not group:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() and not user.isdigit() else uid
        if user.isdigit() and entry is not None and entry[3].isdigit():
            gid = int(entry[3])
        return uid, gid, home
    if group.isdigit():
        return uid, int(group), home
    groups = _table(_read_text(tree, tree.resolve("etc/group", follow_last=True)), 3) if tree.view.layers else []
    match = next((g for g in groups if g[0] == group and g[2].isdigit()), None)
    if match is None:
        raise LookupError(f"no group {group!r} in the image's /etc/group")
    return uid, int(match[2]), home


def glob_tree(tree: Tree, pattern: str) -> list[str]:
    """Paths of `tree` matching `pattern` (Go filepath.Match per component)."""
    import fnmatch

    if not any(c in pattern for c in "*?["):
        return [pattern] if tree.lstat(pattern) is not None else []
    found = [""]
    for part in pattern.split("/"):
        nxt = []
        for base in found:
            if any(c in part for c in "*?["):
                st = tree.lstat(base) if base else tree.lstat("")
                if st is None or not stat.S_ISDIR(st.st_mode):
                    continue
                nxt += [f"{base}/{n}" if base else n for n in tree.listdir(base) if fnmatch.fnmatchcase(n, part)]
            else:
                cand = f"{base}/{part}" if base else part
                if tree.lstat(cand) is not None:
                    nxt.append(cand)
        found = nxt
    return sorted(found)


@dataclass
class Item:
    """One thing to copy: a path of a tree, in-memory data (a heredoc, a download),
    or a local tar archive to extract (ADD)."""

    tree: Tree | None = None
    rel: str = ""
    data: bytes | None = None
    name: str = ""  # file name for data
    mode: int = 0o644
    mtime: int = 0
    archive: str | None = None  # host path of a tar to extract
    pattern: bool = False  # `rel` may be a glob (expanded in the namespace child)


@dataclass
class CopyJob:
    items: list[Item]
    dest: str  # absolute in the image
    dest_is_dir: bool  # ends with "/" (or several sources)
    owner: tuple[int, int] | None = None  # --chown, as numbers
    chmod: int | None = None
    below: list[str] = field(default_factory=list)  # current layers, topmost first
    mkdir_only: bool = False  # WORKDIR: make `dest` when missing
    owner_spec: str | None = None  # --chown as written: resolved against the image's passwd/group


class _Writer:
    def __init__(self, out: IO[bytes], job: CopyJob) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by write_layer
        self.job = job
        self.below = ViewTree(job.below)
        self.dirs: set[str] = set()
        self.count = 0

    def owner(self) -> tuple[int, int]:
        return self.job.owner if self.job.owner is not None else (0, 0)

    def _ti(self, name: str, kind: bytes, mode: int, mtime: int, owner: tuple[int, int]) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.mtime = mtime
        ti.uid, ti.gid = owner
        ti.uname = ti.gname = ""
        return ti

    def emit(self, ti: tarfile.TarInfo, fileobj: IO[bytes] | None = None) -> None:
        self.tar.addfile(ti, fileobj)
        self.count += 1

    def ensure_dir(self, rel: str, *, new_owner: tuple[int, int]) -> None:
        """Make sure directory `rel` and its parents are in the layer."""
        if not rel or rel in self.dirs:
            return
        parent = posixpath.dirname(rel)
        self.ensure_dir(parent, new_owner=new_owner)
        self.dirs.add(rel)
        st = self.below.lstat(rel)
        if st is not None and stat.S_ISDIR(st.st_mode):
            mode = self.below.mode_of(rel, st)
            ti = self._ti(rel, tarfile.DIRTYPE, mode, int(st.st_mtime), self.below.owner_of(rel, st))
        elif st is not None:
            raise CopyError(f"cannot copy to /{rel}: it exists in the image and is not a directory")
        else:
            ti = self._ti(rel, tarfile.DIRTYPE, 0o755, _now(), new_owner)
        self.emit(ti)

    def existing_dir(self, rel: str) -> bool:
        st = self.below.lstat(rel)
        return rel == "" or (st is not None and stat.S_ISDIR(st.st_mode))


def _now() -> int:
    import time

    return int(time.time())


def _tree_entries(tree: Tree, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to `rel`, lstat) for `rel`'s contents, depth first, sorted."""
    stack = [""]
    while stack:
        sub = stack.pop()
        base = f"{rel}/{sub}" if rel and sub else (rel or sub)
        names = tree.listdir(base)
        kids = []
        for name in names:
            child_rel = f"{base}/{name}" if base else name
            st = tree.lstat(child_rel)
            if st is None:
                continue
            inner = f"{sub}/{name}" if sub else name
            yield inner, st
            if stat.S_ISDIR(st.st_mode):
                kids.append(inner)
        stack.extend(reversed(kids))


def _add_tree_entry(w: _Writer, tree: Tree, src_rel: str, dest_rel: str, st: os.stat_result) -> None:
    job = w.job
    owner = w.owner()
    mode = job.chmod if job.chmod is not None else tree.mode_of(src_rel, st)
    mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        w.dirs.add(dest_rel)
        w.emit(w._ti(dest_rel, tarfile.DIRTYPE, mode, mtime, owner))
    elif stat.S_ISLNK(st.st_mode):
        ti = w._ti(dest_rel, tarfile.SYMTYPE, 0o777, mtime, owner)
        ti.linkname = os.readlink(tree.host_path(src_rel))
        w.emit(ti)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(tree.host_path(src_rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(fd).st_size
            ti = w._ti(dest_rel, tarfile.REGTYPE, mode, mtime, owner)
            ti.size = size
            w.emit(ti, f)
    elif stat.S_ISFIFO(st.st_mode):
        w.emit(w._ti(dest_rel, tarfile.FIFOTYPE, mode, mtime, owner))


def _dest_for(w: _Writer, leaf_name: str, is_dir_source: bool) -> str:
    """Where one source lands (relative), per docker's rules."""
    job = w.job
    dest = job.dest.strip("/")
    if is_dir_source:
        return dest
    if job.dest_is_dir or w.existing_dir(dest):
        return f"{dest}/{leaf_name}" if dest else leaf_name
    return dest


def _copy_item(w: _Writer, item: Item) -> None:
    if item.archive is not None:
        _extract(w, item.archive)
        return
    if item.data is not None:
        target = _dest_for(w, item.name, False)
        w.ensure_dir(posixpath.dirname(target), new_owner=w.owner())
        mode = w.job.chmod if w.job.chmod is not None else item.mode
        ti = w._ti(target, tarfile.REGTYPE, mode, item.mtime or _now(), w.owner())
        ti.size = len(item.data)
        import io

        w.emit(ti, io.BytesIO(item.data))
        return
    tree = item.tree
    assert tree is not None
    if item.pattern:
        matches = glob_tree(tree, item.rel)
        if not matches:
            raise CopyError(f"{item.rel or '.'}: no such file or directory in the source stage or image")
        for rel in matches:
            _copy_item(w, Item(tree=tree, rel=rel))
        return
    st = tree.lstat(item.rel)
    if st is None:
        raise CopyError(f"{item.rel or '.'}: no such file or directory")
    if stat.S_ISDIR(st.st_mode):
        target = _dest_for(w, "", True)
        if target:
            w.ensure_dir(posixpath.dirname(target), new_owner=w.owner())
            if target not in w.dirs:
                w.dirs.add(target)
                mode = w.job.chmod if w.job.chmod is not None else tree.mode_of(item.rel, st)
                w.emit(w._ti(target, tarfile.DIRTYPE, mode, int(st.st_mtime), w.owner()))
        for sub, sst in _tree_entries(tree, item.rel):
            _add_tree_entry(w, tree, f"{item.rel}/{sub}" if item.rel else sub,
                            f"{target}/{sub}" if target else sub, sst)
        return
    target = _dest_for(w, posixpath.basename(item.rel), False)
    if not target:
        raise CopyError("cannot copy a file onto /")
    w.ensure_dir(posixpath.dirname(target), new_owner=w.owner())
    _add_tree_entry(w, tree, item.rel, target, st)


def _extract(w: _Writer, archive: str) -> None:
    """ADD of a local tar: its members below the destination directory."""
    dest = w.job.dest.strip("/")
    w.ensure_dir(dest, new_owner=w.owner())
    with tarfile.open(archive, mode="r:*") as src:
        for member in src:
            name = posixpath.normpath("/" + member.name).lstrip("/")
            if not name or name == ".":
                continue
            ti = copy.copy(member)
            ti.name = f"{dest}/{name}" if dest else name
            if member.islnk():
                ln = posixpath.normpath("/" + member.linkname).lstrip("/")
                ti.linkname = f"{dest}/{ln}" if dest else ln
            if w.job.owner is not None:
                ti.uid, ti.gid = w.job.owner
            ti.uname = ti.gname = ""
            parent = posixpath.dirname(ti.name)
            if parent not in w.dirs:
                w.ensure_dir(parent, new_owner=w.owner())
            if member.isdir():
                w.dirs.add(ti.name)
            w.emit(ti, src.extractfile(member) if member.isreg() else None)


def _resolve_dest(w: _Writer, dest: str) -> str:
    followed = w.below.resolve(dest, follow_last=True)
    if w.existing_dir(followed):
        return followed
    return w.below.resolve(dest)


def write_layer(job: CopyJob, out_fd: int) -> int:
    """Write the layer tar for `job` to `out_fd`; returns the member count."""
    with os.fdopen(out_fd, "wb", buffering=1 << 20, closefd=False) as out:
        w = _Writer(out, job)
        try:
            return _write(w, job)
        except BaseException:
            w.tar.fileobj.closed = True  # type: ignore[attr-defined]  # nothing more is written
            raise


def _write(w: _Writer, job: CopyJob) -> int:
    if job.owner_spec:
        try:
            uid, gid, _ = resolve_user(w.below, job.owner_spec)
        except LookupError as exc:
            raise CopyError(f"--chown={job.owner_spec}: {exc}") from None
        job.owner = (uid, gid)
    if job.mkdir_only:
        rel = w.below.resolve(job.dest.strip("/"), follow_last=True)
        if not w.existing_dir(rel):
            w.ensure_dir(rel, new_owner=(0, 0))
    else:
        job.dest = "/" + _resolve_dest(w, job.dest.strip("/"))
        for item in job.items:
            _copy_item(w, item)
    w.tar.close()
    return w.count
