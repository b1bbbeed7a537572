"""Containers whose image is a squashfs file (`rootless run ./app.sqfs CMD`).

An image argument that starts with "/" or "." (never an image reference), or an
existing file named *.sqfs or *.squashfs, is a squashfs file (see
`overlay.squashfs` for the format `save --format squashfs` writes).

Its root: squashfuse mounts the file read-only on `<container>/lower`, and an
overlay (kernel overlayfs in the user namespace, or fuse-overlayfs, as the store's
storage driver says) adds `<container>/upper` for writes, so the file is never
modified and any number of containers share it. Both are RL_OP_HELPER /
RL_OP_OVERLAY mount ops, run in the container's user and mount namespaces before
its root is built (csrc/rl_mount.c): the mounts exist only in the container's mount
namespace, nothing is mounted on the host, and the FUSE daemons exit when the
container's mounts go away with it (nothing is left behind). `--user` names are resolved from the image's /etc/passwd and /etc/group,
kept in the file's metadata and written to `<container>/image-etc` at create.
"""

from __future__ import annotations

import os

from rootless.errors import ContainerError, UnsupportedHostError
from rootless.runtime.imagesource import ContainerImage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.native.spawn import MountOp
    from rootless.runtime.containers import Container

MODE = "squashfs"  # a container's rootfs_mode
SUFFIXES = (".sqfs", ".squashfs")
ETC_DIR = "image-etc"
UPPER_DRIVERS = ("overlay", "fuse-overlayfs")


def is_file_argument(arg: str) -> bool:
    """Whether an image argument names a file rather than an image reference."""
    if arg.startswith(("/", ".")):
        return True
    return arg.endswith(SUFFIXES) and os.path.isfile(arg)


class SquashfsImage(ContainerImage):
    """A squashfs file as a container image."""

    def __init__(self, path: str, name: str, image_id: str, config: dict[str, object],
                 etc: dict[str, str]) -> None:
        super().__init__(image_id, name, config, "", [])
        self.squashfs = path
        self.etc = etc


def open_image(arg: str, root: str | None = None) -> SquashfsImage:
    """The squashfs file `arg` as an image (validated; one-line errors). With the
    store's `root`, what its metadata says is cached in <root>/run-cache (marshal,
    keyed by the file's path, inode, size and times): `run` then neither reads the
    trailer nor imports json (5 ms)."""
    path = os.path.realpath(arg)
    cached = _cached(root, path) if root else None
    if cached is not None:
        return cached
    from rootless.overlay.squashfs import read_metadata

    meta = read_metadata(path)
    image = SquashfsImage(path, path, meta.id.split(":", 1)[-1], meta.config, meta.etc)
    if root:
        _remember(root, image)
    return image


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _cache_path(root: str, path: str) -> str:
    import zlib

    from rootless.runtime.imagesource import CACHE_DIR

    return os.path.join(root, CACHE_DIR, "sqfs-%08x" % zlib.crc32(path.encode("utf-8", "surrogateescape")))


def _cached(root: str, path: str) -> SquashfsImage | None:
    from rootless.runtime.imagesource import read_cache

    data = read_cache(_cache_path(root, path))
    stamp = _stamp(path)
    if data is None or stamp is None or data.get("key") != [path, *stamp]:
        return None
    return SquashfsImage(path, path, data["id"], data["config"], data["etc"])


def _remember(root: str, image: SquashfsImage) -> None:
    from rootless.runtime.imagesource import write_cache

    stamp = _stamp(image.squashfs)
    if stamp is None:
        return
    write_cache(_cache_path(root, image.squashfs),
                {"key": [image.squashfs, *stamp], "id": image.id, "config": image.config_json, "etc": image.etc})


def container_config(image: SquashfsImage, driver: str) -> dict[str, object]:
    """The container config entries of a squashfs container (merged into config.json).
    `driver` is the store's storage driver: the overlay put above the file."""
    if driver not in UPPER_DRIVERS:
        raise UnsupportedHostError(
            f"a squashfs image needs an overlay above it, and the {driver} storage driver has none",
            hint="use --storage-driver overlay or fuse-overlayfs")
    return {"rootfs_mode": MODE, "squashfs": image.squashfs, "squashfs_upper": driver,
            "squashfs_image_id": image.id, "image_id": "", "layers_dir": "", "lower": []}


def populate(c: Container, image: SquashfsImage) -> None:
    """Write the image's /etc/passwd and /etc/group where `--user` lookups find them."""
    etc = os.path.join(c.path(ETC_DIR), "etc")
    os.makedirs(etc, mode=0o755, exist_ok=True)
    for name, text in image.etc.items():
        if name in ("passwd", "group"):
            with open(os.path.join(etc, name), "w", encoding="utf-8") as f:
                f.write(text)


def user_layers(c: Container) -> list[str]:
    """Where `--user` is looked up: the container's upper dir, then the image's files."""
    return [c.path("upper"), c.path(ETC_DIR)]


def _squashfuse() -> str:
    from rootless.overlay.squashfs import find_tool

    path = find_tool("squashfuse_ll") or find_tool("squashfuse")
    if path is None:
        raise UnsupportedHostError("squashfuse is not installed (needed to run a squashfs image)",
                                   hint="apt install squashfuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise UnsupportedHostError("/dev/fuse is not accessible (needed to run a squashfs image)",
                                   hint="make /dev/fuse mode 0666 (modprobe fuse)")
    return path


def rootfs_and_ops(c: Container) -> tuple[str, list[MountOp]]:
    """The container's root (its `merged` dir) and the mount ops that build it."""
    from rootless.native.spawn import OP_HELPER, OP_OVERLAY, MountOp

    path = str(c.config["squashfs"])
    if not os.path.isfile(path):
        raise ContainerError(f"the image file {path} of container {c.name} is gone")
    for d in ("lower", "upper", "work", "merged"):
        os.makedirs(c.path(d), mode=0o755, exist_ok=True)
    lower, merged = c.path("lower"), c.path("merged")
    ops = [MountOp(OP_HELPER, lower, source=c.dir, argv=[_squashfuse(), path, lower])]
    dirs = "lowerdir=lower,upperdir=upper,workdir=work"
    if c.config.get("squashfs_upper") == "fuse-overlayfs":
        from rootless.runtime.storage import fuse_overlayfs_path

        helper = fuse_overlayfs_path()
        if helper is None:
            raise ContainerError("fuse-overlayfs is not usable here (not installed, or no /dev/fuse)")
        # noacl: squashfs holds no ACLs, and squashfuse answers EOPNOTSUPP for them,
        # which fuse-overlayfs would pass on as a failed permission check (exec as non-root)
        ops.append(MountOp(OP_HELPER, merged, source=c.dir, argv=[helper, "-o", "noacl," + dirs, merged]))
    else:
        ops.append(MountOp(OP_OVERLAY, merged, source=c.dir, data=dirs + ",userxattr"))
    return merged, ops


def single_owner(ops: list[MountOp], uid: int, gid: int) -> None:
    """With a single-id mapping, show every file of a squashfs image as owned by that
    id (as the store's layers are): other owners would be unmapped, and not even the
    container's root could open a 0700 directory of theirs. squashfuse's high-level
    build has the uid=/gid= options (squashfuse_ll does not)."""
    from rootless.native.spawn import OP_HELPER

    for op in ops:
        if op.op != OP_HELPER or not op.argv or not os.path.basename(op.argv[0]).startswith("squashfuse"):
            continue
        from rootless.overlay.squashfs import find_tool

        op.argv[0] = find_tool("squashfuse") or op.argv[0]
        op.argv[1:1] = ["-o", f"uid={uid},gid={gid}"]
