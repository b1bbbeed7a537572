"""Build a minimal busybox root filesystem from Debian's busybox-static.

The result is what `busybox --install -s` would give, made from the host side:
`/bin/busybox` plus a symlink per applet (in /bin for every applet, and also at
the applet's canonical place from `busybox --list-full`, e.g. /usr/bin/env,
/sbin/ifconfig), the usual top-level directories, and an /etc/passwd and
/etc/group with a few well-known accounts. Links are relative so that they also
resolve correctly when the tree is inspected from the host.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from functools import cache

BUSYBOX = os.environ.get("ROOTLESS_TEST_BUSYBOX", "/bin/busybox")

DIRS: dict[str, int] = {
    "bin": 0o755,
    "sbin": 0o755,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "proc": 0o755,
    "sys": 0o755,
    "dev": 0o755,
    "tmp": 0o1777,
    "etc": 0o755,
    "root": 0o755,
    "home": 0o755,
    "home/user": 0o755,
    "var": 0o755,
    "run": 0o755,
}

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:
user:x:1000:
nogroup:x:65534:
"""


class RootfsError(RuntimeError):
    pass


@cache
def busybox_applets() -> tuple[str, ...]:
    """Canonical applet paths relative to / (e.g. 'bin/sh', 'usr/bin/env')."""
    if not os.access(BUSYBOX, os.X_OK):
        raise RootfsError(
            f"{BUSYBOX} not found: install busybox-static (sudo bash scripts/setup-host.sh)"
        )
    out = subprocess.run(
        [BUSYBOX, "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return tuple(sorted(line.strip().lstrip("/") for line in out.splitlines() if line.strip()))


def _link(target: str, path: str) -> None:
    if not os.path.lexists(path):
        os.symlink(target, path)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
    os.chmod(path, mode)


def _install_applets(dest: str) -> None:
    for applet in busybox_applets():
        name = os.path.basename(applet)
        if name == "busybox":
            continue
        _link("busybox", os.path.join(dest, "bin", name))
        parent = os.path.dirname(applet)
        if parent and parent != "bin":
            up = "/".join([".."] * len(parent.split("/")))
            _link(f"{up}/bin/busybox", os.path.join(dest, applet))


def chown_tree(root: str, uid: int, gid: int) -> None:
    """lchown everything under (and including) root."""
    os.lchown(root, uid, gid)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(parent, name), uid, gid)


def make_rootfs(dest: str, uid: int = 0, gid: int = 0) -> str:
    """Create a busybox rootfs at `dest` (must not exist or be empty); return dest.

    Files are 0644, directories 0755 (/tmp 1777), /bin/busybox 0755, all owned by
    uid:gid (root by default).
    """
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise RootfsError(f"{dest} is not empty")
    os.chmod(dest, 0o755)
    for rel, mode in DIRS.items():
        path = os.path.join(dest, rel)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    shutil.copyfile(BUSYBOX, os.path.join(dest, "bin", "busybox"))
    os.chmod(os.path.join(dest, "bin", "busybox"), 0o755)
    _install_applets(dest)
    _write(os.path.join(dest, "etc", "passwd"), PASSWD)
    _write(os.path.join(dest, "etc", "group"), GROUP)
    if (uid, gid) != (os.geteuid(), os.getegid()):
        chown_tree(dest, uid, gid)
    return dest


def is_world_readable_tree(root: str) -> bool:
    """True if `root` and every ancestor is traversable by others."""
    path = os.path.abspath(root)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def main(argv: list[str]) -> int:
    """python3 tests/helpers/rootfs.py DEST [UID GID]: used by scripts/demo.sh and benchmarks."""
    if len(argv) not in (1, 3):
        print("usage: rootfs.py DEST [UID GID]", file=sys.stderr)
        return 2
    uid, gid = (int(argv[1]), int(argv[2])) if len(argv) == 3 else (0, 0)
    print(make_rootfs(argv[0], uid, gid))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
