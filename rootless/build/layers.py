"""Making a build step's layer: a tar produced in the build's user namespace
(an overlay upper dir after RUN, or a COPY/ADD/WORKDIR tar), hashed as it
streams into blobs/tmp, then gzip'd into the blob store and unpacked into the
layer store by `layerio.ingest_layer` (the same path as commit and load)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rootless.overlay import userns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.image.types import Descriptor
    from rootless.store import Store

CHUNK = 1 << 20


def produce_tar(store: Store, writer: Callable[[int], int], what: str) -> tuple[str, int, str] | None:
    """Run `writer(fd)` in a namespace child; returns (tmp path, member count,
    diffID), or None when the tar had no members (the file is removed then)."""
    from rootless.overlay.export import StreamDigest

    os.makedirs(store.paths.blobs_tmp, exist_ok=True)
    tmp = os.path.join(store.paths.blobs_tmp, f"build.{os.getpid()}.{time.monotonic_ns()}")
    r, w = os.pipe2(os.O_CLOEXEC)
    cr, cw = os.pipe2(os.O_CLOEXEC)

    def work() -> None:
        os.close(r)
        os.close(cr)
        count = writer(w)
        os.close(w)
        os.write(cw, str(count).encode())
        os.close(cw)

    try:
        child = userns.spawn(work, mapping=userns.caller_mapping(), close_in_parent=[w, cw])
    except BaseException:
        os.close(r)
        os.close(cr)
        raise
    digest = StreamDigest()
    try:
        with open(tmp, "xb") as out:
            while chunk := os.read(r, CHUNK):
                digest.update(chunk)
                out.write(chunk)
        count_text = os.read(cr, 64)
    except BaseException:
        _unlink(tmp)
        os.close(r)
        os.close(cr)
        child.kill()
        raise
    os.close(r)
    os.close(cr)
    try:
        child.wait()
    except BaseException:
        _unlink(tmp)
        raise
    count = int(count_text or b"0")
    if count == 0:
        _unlink(tmp)
        return None
    return tmp, count, digest.digest


def ingest(store: Store, tmp: str, diff_id: str, what: str) -> Descriptor:
    from rootless.image.layerio import LayerSource, ingest_layer

    try:
        src = LayerSource(lambda: open(tmp, "rb"), diff_id, what)  # noqa: SIM115
        return ingest_layer(store, src, oci=True)
    finally:
        _unlink(tmp)


def pack_upper_writer(upper: str, lowers_top_down: list[str]) -> Callable[[int], int]:
    """A writer for `produce_tar`: the upper dir of a RUN as an OCI layer."""
    from rootless.overlay.diff import RUNTIME_MOUNTPOINTS
    from rootless.overlay.export import pack_upper

    mapping = userns.caller_mapping()
    override = mapping is not None and mapping.mode == "single"

    def write(fd: int) -> int:
        n = pack_upper(upper, fd, lowers_top_down=lowers_top_down, skip=frozenset(RUNTIME_MOUNTPOINTS),
                       override=override)
        return max(n, 1)  # a RUN always makes a layer, even an empty one

    return write


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
