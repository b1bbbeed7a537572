"""Shared image stores as overlay lowers: in place when their filesystem allows
it, else from a private copy in the user's own store.

Kernel overlayfs (the `overlay` driver) uses a shared store's unpacked layers
where they are, as long as

  - its filesystem has user xattrs: an opaque directory is marked with
    `user.overlay.opaque`; where the admin's unpack could not set it (NFSv3,
    ramfs...) a `.wh..wh..opq` file stands for it, which only fuse-overlayfs
    understands, and
  - the kernel accepts a directory of that filesystem as a lowerdir in a user
    namespace (probed with a real mount).

Otherwise the image's layers from that store are unpacked once from the shared
store's compressed blobs into the user's own store ("a private copy"; nothing is
downloaded), and later lookups find them there first. fuse-overlayfs and vfs
read any filesystem (vfs unpacks from the blobs anyway), so for them the layers
are always used in place. The verdict is probed once per shared store,
filesystem and kernel, and cached in the user's store (`shared-stores`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import replace

from rootless import log
from rootless.store import ImageRecord, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.store.layers import LayerInfo

CACHE = "shared-stores"  # lines: "<kernel> <st_dev> <st_ino> <0|1> <root>"
XATTR_PROBE = "user.overlay.opaque"


def usable_layers(store: Store, record: ImageRecord) -> ImageRecord:
    """`record` with every layer usable by this user's storage driver: layers of
    a shared store that kernel overlay cannot use in place are copied into the
    own store first (once)."""
    from rootless.store.stack import StackedLayerStore

    layers = store.layers
    if not isinstance(layers, StackedLayerStore):
        return record
    roots = {r for r in (layers.shared_root(d) for d in record.diff_ids) if r is not None}
    if not roots:
        return record
    from rootless.runtime.storage import choose

    if choose(store.root) != "overlay":
        return record
    unusable = {r for r in roots if not in_place(store.root, r)}
    if not unusable:
        return record
    copy_layers(store, record, unusable)
    return replace(record, layers=tuple(layers.diff_dir(d) for d in record.diff_ids))


def in_place(own_root: str, shared_root: str) -> bool:
    """Whether kernel overlay can use the shared store's layers where they are."""
    layers_dir = os.path.join(shared_root, "layers")
    try:
        st = os.stat(layers_dir)
    except OSError:
        return True  # nothing to decide: the layer lookups fail on their own
    key = f"{os.uname().release} {st.st_dev} {st.st_ino}"
    cache = os.path.join(own_root, CACHE)
    lines = _read_lines(cache)
    for line in lines:
        parts = line.split(" ", 4)
        if len(parts) == 5 and " ".join(parts[:3]) == key and parts[4] == shared_root:
            return parts[3] == "1"
    ok, why = probe(own_root, layers_dir)
    if not ok:
        log.info(f"the shared store {shared_root} cannot serve overlay lowers in place ({why}): "
                 "its layers are copied into your store when used")
    keep = [ln for ln in lines if not ln.endswith(" " + shared_root)]
    _write_lines(cache, keep + [f"{key} {int(ok)} {shared_root}"])
    return ok


def probe(own_root: str, layers_dir: str) -> tuple[bool, str]:
    """(usable in place, why not): user xattrs, then a real overlay mount in a
    user namespace with `layers_dir` as the lower."""
    try:
        os.getxattr(layers_dir, XATTR_PROBE)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False, "its filesystem has no user xattrs"
        if exc.errno != errno.ENODATA:
            return False, f"cannot read its xattrs: {exc.strerror}"
    import shutil
    import tempfile

    from rootless.native import probe as native_probe

    base = os.path.join(own_root, "tmp")
    os.makedirs(base, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="probe-shared-", dir=base)
    try:
        dirs = [os.path.join(tmp, d) for d in ("upper", "work", "merged")]
        for d in dirs:
            os.mkdir(d)
        err = native_probe.overlay(layers_dir, dirs[0], dirs[1], dirs[2], extra="userxattr")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if err is not None:
        return False, f"the kernel refuses it as an overlay lower: {err.strerror or err}"
    return True, ""


def copy_layers(store: Store, record: ImageRecord, roots: set[str]) -> None:
    """Unpack the image's layers that live in the shared stores `roots` into the
    own store, from their compressed blobs (verified against the diffIDs)."""
    from rootless.image.layerio import iter_tar
    from rootless.store.layers import UnpackResult
    from rootless.store.stack import StackedLayerStore

    layers = store.layers
    assert isinstance(layers, StackedLayerStore)
    with store.lock(shared=True):
        for desc, diff_id in zip(record.manifest.layers, record.diff_ids, strict=True):
            root = layers.shared_root(diff_id)
            info = layers.info(diff_id)
            if root not in roots or info is None:
                continue
            with layers.lock(diff_id):
                if layers.own_info(diff_id) is not None:
                    continue
                log.info(f"copying layer {diff_id[7:19]} from the shared store {root}")
                chunks = iter_tar(store.blobs.path(desc.digest), desc.media_type, diff_id, info.size)

                def finish(c: Iterator[bytes] = chunks, i: LayerInfo = info) -> UnpackResult:
                    for _ in c:  # the rest: the digest is checked at the end
                        pass
                    return UnpackResult(i.size, i.compressed_digest, i.compressed_size, i.media_type)

                layers.unpack(diff_id, chunks, finish)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return []


def _write_lines(path: str, lines: list[str]) -> None:
    tmp = f"{path}.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(ln + "\n" for ln in lines))
        os.rename(tmp, path)
    except OSError:
        pass  # only costs a probe next time
