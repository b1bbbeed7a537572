"""The vfs driver: a container's private root, flattened from the image's layer blobs.

Each layer blob is inflated and unpacked in order into <container>/rootfs with
whiteouts applied by deletion (rl_untar's flatten mode), with the same ownership
rules as the store: real ids as root, container ids inside a user namespace for a
user with subordinate ids, override_stat xattrs otherwise.
"""

from __future__ import annotations

import os

from rootless.errors import StoreError


def populate(dest: str, root: str, layers: list[tuple[str, str]]) -> None:
    """Unpack `layers` ((digest, media type), lowest first) from the store at `root`."""
    from rootless.image.pull import inflater_for
    from rootless.native.job import untar_in_userns
    from rootless.native.untar import untar_stream
    from rootless.store.ownership import OVERRIDE, ROOT, USERNS, Ownership
    from rootless.store.store import Store

    store = Store.open(root)
    own = Ownership.detect()
    os.makedirs(dest, mode=0o755, exist_ok=True)
    for digest, media_type in layers:
        path = store.blobs.path(digest)
        if not os.path.exists(path):
            raise StoreError(f"layer blob {digest[:19]} is missing: the vfs driver needs it",
                             hint="pull the image again")
        inflater = inflater_for(media_type)

        def chunks(p: str = path, inf: object = inflater) -> object:
            with open(p, "rb") as f:
                while True:
                    data = f.read(1 << 20)
                    if not data:
                        return
                    out = inf.feed(data)  # type: ignore[attr-defined]
                    if out:
                        yield out

        if own.mode == USERNS:
            untar_in_userns(chunks(), dest, own._write_maps, overlay=False, userxattr=False)  # type: ignore[arg-type]
        else:
            untar_stream(chunks(), dest, chown=own.mode == ROOT, override_stat=own.mode == OVERRIDE,  # type: ignore[arg-type]
                         overlay=False, userxattr=False)
