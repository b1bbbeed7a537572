"""Fuzz the C layer unpacker (csrc/rl_untar.c) through `rootless.native.untar`.

Input: one mode byte, then a layer stream. Mode bits:

    0-1  source: 0 plain tar; 1 the tar gzip'd here (two members) and inflated
         by the pull path's Inflater; 2 the payload is itself the gzip stream;
         3 plain tar fed in 7-byte chunks
    2    overlay (whiteouts as 0:0 devices)   3  userxattr
    4    no_devices                           5-6  1 chown, 2 override_stat
    7    keep header checksums as they are (otherwise they are fixed up, so
         that mutations get past the checksum: the C core is not coverage-
         instrumented, libFuzzer cannot learn the checksum)

Each input unpacks into a fresh `root/` next to `sentinel/` (holding one file)
in a scratch directory ($ROOTLESS_FUZZ_SCRATCH or the temporary directory).
As root, device nodes are created only when that directory is mounted nodev
(no_devices is forced otherwise). Invariants:
  - only NativeError escapes (and, for source 2, the DigestMismatchError the
    pull path makes of corrupt gzip);
  - nothing beside `root/` changes: the scratch directory, `sentinel/` and its
    file keep their names, modes, owners, times, link counts and contents;
  - every inode below root/ has all its links below root/ (no hard link to
    an outside file), and with no_devices there is no device but whiteouts;
  - without chown everything belongs to the caller; with override_stat files
    and directories keep u+rw (u+rwx) on disk and no setuid/setgid bit;
  - no file descriptor leaks; the C rmtree removes the result.
"""

from __future__ import annotations

import atexit
import gzip
import os
import random
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # fuzzlib; appended: rootless stays first
import fuzzlib

with fuzzlib.instrumented(__name__ == "__main__"):
    from rootless.errors import DigestMismatchError
    from rootless.image.layerio import Inflater
    from rootless.native import NativeError
    from rootless.native.fs import rmtree
    from rootless.native.untar import untar_stream

PLAIN, GZIP_HERE, GZIP_RAW, SMALL_CHUNKS = range(4)
HEADER_ONLY_TYPES = b"123456"
# tar header fields: name, mode, uid, gid, size, mtime, type, linkname, magic,
# devmajor, devminor, prefix, GNU sparse map, isextended, realsize
HEADER_FIELDS = (0, 100, 108, 116, 124, 136, 156, 157, 257, 329, 337, 345, 386, 482, 483)


def hot_position(n: int, rng: random.Random) -> int:
    """For fuzzlib.mutants: a header field of some 512-byte block (after the mode byte)."""
    block = rng.randrange(max(1, (n - 1) // 512 + 1))
    return 1 + block * 512 + rng.choice(HEADER_FIELDS) + rng.randrange(8)


# ------------------------------------------------------------------ input


def fix_checksums(tar: bytes) -> bytes:
    """Recompute the checksum of every block a tar reader takes for a header."""
    buf = bytearray(tar)
    off = 0
    while off + 512 <= len(buf):
        header = buf[off : off + 512]
        if not any(header):
            break
        header[148:156] = b" " * 8
        buf[off + 148 : off + 156] = b"%06o\0 " % sum(header)
        size = _octal(header[124:136])
        if header[156:157] in [bytes([t]) for t in HEADER_ONLY_TYPES]:
            size = 0
        off += 512 + (size + 511) // 512 * 512
    return bytes(buf)


def _octal(field: bytes | bytearray) -> int:
    digits = field.strip(b" \0")
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        return 0


def chunks(mode: int, payload: bytes) -> Iterable[bytes]:
    """The stream untar_stream gets (inflated while it is read for the gzip sources)."""
    source = mode & 3
    if source == GZIP_HERE:
        cut = len(payload) // 3
        payload = gzip.compress(payload[:cut], mtime=0) + gzip.compress(payload[cut:], mtime=0)
    if source in (GZIP_HERE, GZIP_RAW):
        return _inflate(payload)
    if source == SMALL_CHUNKS:
        return [payload[i : i + 7] for i in range(0, len(payload), 7)]
    return [payload]


def _inflate(data: bytes) -> Iterator[bytes]:
    """As the pull path does (pull._LayerStream): codec errors become DigestMismatchError."""
    inflater = Inflater("gzip")
    for i in range(0, len(data), 4096):
        try:
            out = inflater.feed(data[i : i + 4096])
        except Exception as exc:
            raise DigestMismatchError(f"corrupt gzip data ({exc})") from exc
        if out:
            yield out


def options(mode: int) -> dict[str, bool]:
    own = (mode >> 5) & 3
    return {
        "overlay": bool(mode & 4),
        "userxattr": bool(mode & 8),
        "no_devices": bool(mode & 16),
        "chown": own == 1,
        "override_stat": own == 2,
    }


# ------------------------------------------------------------------ scratch


class Scratch:
    """base/{root,sentinel/secret}; root is made afresh for every input. The base
    goes to $ROOTLESS_FUZZ_SCRATCH when set (test_fuzz.py removes that: libFuzzer
    ends the process without running atexit handlers)."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="rl-fuzz-untar-", dir=os.environ.get("ROOTLESS_FUZZ_SCRATCH"))
        self.root = os.path.join(self.base, "root")
        self.sentinel = os.path.join(self.base, "sentinel")
        os.mkdir(self.sentinel)
        with open(os.path.join(self.sentinel, "secret"), "wb") as f:
            f.write(b"secret\n")
        os.mkdir(self.root)
        self.before = self.outside()
        os.rmdir(self.root)
        # Real device nodes only where they cannot be opened: as root a bug that
        # writes through a member could otherwise reach a disk (test_fuzz.py and
        # sanitize.sh give root a nodev scratch mount in a private namespace).
        self.devices_ok = os.geteuid() != 0 or bool(os.statvfs(self.base).f_flag & os.ST_NODEV)

    def outside(self) -> dict[str, object]:
        """What an escape could change (the base's mtime changes with root/ itself)."""
        state: dict[str, object] = {}
        for rel in (".", "sentinel", "sentinel/secret"):
            st = os.lstat(os.path.join(self.base, rel))
            times = st.st_mtime_ns if rel != "." else 0
            state[rel] = (st.st_mode, st.st_uid, st.st_gid, times, st.st_nlink, st.st_ino)
        state["names"] = sorted(os.listdir(self.base))
        state["sentinel names"] = sorted(os.listdir(self.sentinel))
        with open(os.path.join(self.sentinel, "secret"), "rb") as f:
            state["secret"] = f.read()
        return state

    def remove(self) -> None:
        make_removable(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


def make_removable(path: str) -> None:
    """u+rwx on every directory below path (a non-root run may leave 0500 dirs)."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass


_scratch: Scratch | None = None


def scratch() -> Scratch:
    global _scratch
    if _scratch is None:
        _scratch = Scratch()
        atexit.register(_scratch.remove)
    return _scratch


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------ checks


def check_root(root: str, opts: dict[str, bool]) -> None:
    links: dict[tuple[int, int], tuple[int, int]] = {}
    euid = os.geteuid()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if not opts["chown"]:
                assert st.st_uid == euid, f"{name!r} owned by {st.st_uid} without chown"
            if opts["override_stat"] and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                need = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
                assert st.st_mode & need == need and not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (
                    f"{name!r} has mode {st.st_mode:o} on disk with override_stat")
            if stat.S_ISDIR(st.st_mode):
                continue
            key = (st.st_dev, st.st_ino)
            seen, nlink = links.get(key, (0, st.st_nlink))
            links[key] = (seen + 1, nlink)
            if opts["no_devices"] and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                assert st.st_rdev == 0, f"device {name!r} created with no_devices"
    for key, (seen, nlink) in links.items():
        assert seen == nlink, f"inode {key} has {nlink} links, {seen} of them below the root"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, payload = data[0], data[1:]
    if not mode & 128 and (mode & 3) != GZIP_RAW:
        payload = fix_checksums(payload)
    opts = options(mode)
    if opts["chown"] and os.geteuid() != 0:
        opts["chown"] = False
    s = scratch()
    if not s.devices_ok:
        opts["no_devices"] = True
    fds = open_fds()
    os.mkdir(s.root)
    try:
        errors: tuple[type[BaseException], ...] = (NativeError,)
        if mode & 3 == GZIP_RAW:
            errors += (DigestMismatchError,)
        try:
            stats = untar_stream(chunks(mode, payload), s.root, **opts)
        except errors as exc:
            assert "\n" not in str(exc), str(exc)
            what = getattr(exc, "what", str(exc))
            fuzzlib.feature(f"error {getattr(exc, 'errno', 0)} {what.rsplit(': ', 1)[-1][:60]}")
        else:
            for field, value in asdict(stats).items():
                fuzzlib.feature(f"{field} {fuzzlib.bucket(value)}")
        assert s.outside() == s.before, "something outside the root changed"
        check_root(s.root, opts)
    finally:
        rmtree(s.root)
    assert not os.path.lexists(s.root), "rmtree left the root"
    assert open_fds() == fds, f"file descriptors leaked: {sorted(open_fds() - fds)}"


if __name__ == "__main__":
    fuzzlib.main(test_one_input)
