"""The build cache: step key -> the image config the step produced.

A key is sha256 over the parent's config digest (which covers every layer below
through `rootfs.diff_ids`, and the Env/WorkingDir/User/Shell the step ran with),
the instruction as it runs (after substitution: the argv and the build args of a
RUN; the sources, destination, owner and mode of a COPY) and the content hashes
of what it reads (context files, another stage's result, a download). The value
is the config digest of the result; its layers are the store's, looked up by
diffID, so a hit costs a few small file reads. An entry whose config blob or
layers were removed since (`image prune`) is a miss and is rewritten.

    <store>/build-cache/<key hex>     the config digest, one line
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.store import Store

CACHE_DIR = "build-cache"


def step_key(parent: str, text: str, inputs: Iterable[str] = ()) -> str:
    h = hashlib.sha256()
    h.update(parent.encode() + b"\n" + text.encode("utf-8", "surrogateescape") + b"\n")
    for item in inputs:
        h.update(item.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


class BuildCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = os.path.join(store.root, CACHE_DIR)

    def get(self, key: str) -> str | None:
        """The config digest cached for `key` when it and its layers still exist."""
        try:
            with open(os.path.join(self.dir, key), encoding="ascii") as f:
                digest = f.read().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if not digest.startswith("sha256:") or not self.store.blobs.has(digest):
            return None
        return digest

    def put(self, key: str, config_digest: str) -> None:
        from rootless.store.locking import atomic_write

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        atomic_write(os.path.join(self.dir, key), (config_digest + "\n").encode())
