"""Build the container's mount table (pure: no syscalls). C carries it out in order."""

from __future__ import annotations

from rootless.native.spawn import (
    MF_FILE,
    MF_NOCREATE,
    MF_OPTIONAL,
    MF_RDONLY,
    MF_RECURSIVE,
    MF_SELF,
    OP_BIND,
    OP_MKDIR,
    OP_MOUNT,
    OP_SYMLINK,
    MountOp,
)

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_STRICTATIME = 1 << 24

HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Like docker and podman: parts of /proc that reach the host's kernel are read-only,
# and files and directories that only leak host information are masked. This matters
# most when root runs rootless (container root is then uid 0 on the host, which owns
# these files: /proc/sys/kernel/core_pattern, /proc/sysrq-trigger); the mount table is
# locked once built (rl_mount.c), so container root cannot unmount or remount them.
READONLY_PATHS = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/latency_stats", "/proc/timer_stats")
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware",
               "/sys/devices/virtual/powercap")

# --fakeroot: apt must not try to drop to its _apt sandbox user (the switch is faked,
# so apt would notice it is still root and stop); charliecloud and enroot do the same.
APT_CONFIG_PATH = "/dev/.rootless/apt.conf"


class Volume:
    __slots__ = ("source", "target", "readonly", "is_file")

    def __init__(self, source: str, target: str, readonly: bool, is_file: bool) -> None:
        self.source = source
        self.target = target
        self.readonly = readonly
        self.is_file = is_file


def base_mounts(new_net: bool, pts_gid: int | None) -> list[MountOp]:
    """/proc, /sys, and a minimal /dev."""
    ops = [
        MountOp(OP_MOUNT, "/proc", "proc", "proc", flags=MS_NOSUID | MS_NODEV | MS_NOEXEC),
    ]
    if new_net:
        ops.append(MountOp(OP_MOUNT, "/sys", "sysfs", "sysfs",
                           flags=MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
    else:
        # sysfs can only be mounted by the owner of the network namespace: bind the host's.
        ops.append(MountOp(OP_BIND, "/sys", "/sys", mflags=MF_RECURSIVE | MF_RDONLY))
    ops.append(MountOp(OP_MOUNT, "/dev", "tmpfs", "tmpfs", "mode=755,size=65536k",
                       flags=MS_NOSUID | MS_STRICTATIME))
    for dev in HOST_DEVICES:
        ops.append(MountOp(OP_BIND, "/dev/" + dev, "/dev/" + dev, mflags=MF_FILE | MF_OPTIONAL))
    pts = "newinstance,ptmxmode=0666,mode=0620" + (f",gid={pts_gid}" if pts_gid is not None else "")
    ops += [
        MountOp(OP_MOUNT, "/dev/pts", "devpts", "devpts", pts, flags=MS_NOSUID | MS_NOEXEC),
        MountOp(OP_SYMLINK, "/dev/ptmx", "pts/ptmx"),
        MountOp(OP_MOUNT, "/dev/shm", "shm", "tmpfs", "mode=1777,size=65536k",
                flags=MS_NOSUID | MS_NODEV | MS_NOEXEC),
        MountOp(OP_MOUNT, "/dev/mqueue", "mqueue", "mqueue",
                flags=MS_NOSUID | MS_NODEV | MS_NOEXEC, mflags=MF_OPTIONAL),
        MountOp(OP_SYMLINK, "/dev/fd", "/proc/self/fd"),
        MountOp(OP_SYMLINK, "/dev/stdin", "/proc/self/fd/0"),
        MountOp(OP_SYMLINK, "/dev/stdout", "/proc/self/fd/1"),
        MountOp(OP_SYMLINK, "/dev/stderr", "/proc/self/fd/2"),
    ]
    return ops + protect_mounts()


def protect_mounts() -> list[MountOp]:
    """Read-only and masked paths of /proc and /sys (those the kernel lacks are skipped)."""
    some = MF_NOCREATE | MF_OPTIONAL
    ops = [MountOp(OP_BIND, p, "", mflags=MF_SELF | MF_RDONLY | MF_RECURSIVE | some) for p in READONLY_PATHS]
    ops += [MountOp(OP_BIND, p, "/dev/null", mflags=MF_FILE | MF_RDONLY | some) for p in MASKED_FILES]
    ops += [MountOp(OP_MOUNT, p, "tmpfs", "tmpfs", "mode=0555", mflags=some,
                    flags=MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC) for p in MASKED_DIRS]
    return ops


def etc_mounts(files: dict[str, str], readonly: bool = False) -> list[MountOp]:
    """Bind /etc files (hosts, hostname, resolv.conf) over the rootfs's own."""
    flags = MF_FILE | MF_OPTIONAL | (MF_RDONLY if readonly else 0)
    return [MountOp(OP_BIND, "/etc/" + name, host_path, mflags=flags) for name, host_path in files.items()]


def volume_mounts(volumes: list[Volume]) -> list[MountOp]:
    return [
        MountOp(OP_BIND, v.target, v.source,
                mflags=MF_RECURSIVE | (MF_RDONLY if v.readonly else 0) | (MF_FILE if v.is_file else 0))
        for v in volumes
    ]


def tmpfs_mounts(targets: list[str]) -> list[MountOp]:
    ops = []
    for t in targets:
        path, _, opts = t.partition(":")
        ops.append(MountOp(OP_MOUNT, path, "tmpfs", "tmpfs", opts or "mode=1777",
                           flags=MS_NOSUID | MS_NODEV))
    return ops


def mkdir(target: str, mode: int = 0o755) -> MountOp:
    return MountOp(OP_MKDIR, target, mode=mode)


def fakeroot_mounts() -> list[MountOp]:
    """The apt configuration for root emulation, in our /dev tmpfs (never in the image)."""
    import os

    import rootless

    conf = os.path.join(os.path.dirname(rootless.__file__), "data", "apt-fakeroot.conf")
    return [MountOp(OP_BIND, APT_CONFIG_PATH, conf, mflags=MF_FILE | MF_RDONLY)]
