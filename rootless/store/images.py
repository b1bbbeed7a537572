"""Image names: the store's `index.json`, an OCI image layout index.

Each entry points at one image manifest. A named entry carries the full
reference in `org.opencontainers.image.ref.name` (`docker.io/library/busybox:
latest`), so `skopeo inspect oci:<root>:docker.io/library/busybox:latest` and
umoci read the store. A name is on at most one entry; an image without names
(pulled by digest, or whose tag moved on) keeps one nameless entry, like
docker's `<none>:<none>`. `io.rootless.image.repo-digest` records the
`name@digest` the image was pulled by.

Readers load index.json without locks (it is replaced atomically); writers
read-modify-write it under `images.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from rootless.errors import StoreError
from rootless.paths import StorePaths
from rootless.store.locking import FileLock, atomic_write

REF_NAME = "org.opencontainers.image.ref.name"
REPO_DIGEST = "io.rootless.image.repo-digest"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LOCK_TIMEOUT = 30.0


@dataclass
class Entry:
    """One index.json descriptor."""

    digest: str
    media_type: str
    size: int
    name: str | None = None
    repo_digest: str | None = None
    platform: dict[str, str] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        annotations = dict(self.extra)
        if self.name:
            annotations[REF_NAME] = self.name
        if self.repo_digest:
            annotations[REPO_DIGEST] = self.repo_digest
        obj: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            obj["annotations"] = annotations
        if self.platform:
            obj["platform"] = self.platform
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Entry:
        raw = obj.get("annotations")
        annotations = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        name = annotations.pop(REF_NAME, None)
        repo_digest = annotations.pop(REPO_DIGEST, None)
        platform = obj.get("platform")
        size = obj.get("size", 0)
        return cls(
            digest=str(obj["digest"]),
            media_type=str(obj.get("mediaType", "")),
            size=size if isinstance(size, int) else 0,
            name=name,
            repo_digest=repo_digest,
            platform={str(k): str(v) for k, v in platform.items()}
            if isinstance(platform, dict)
            else None,
            extra=annotations,
        )


class ImageIndex:
    """Read and change index.json."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths

    def entries(self) -> list[Entry]:
        try:
            with open(self.paths.index_json, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{self.paths.index_json} is unreadable: {exc}",
                hint="restore it from a backup, or remove it and pull the images again",
            ) from exc
        items = data.get("manifests") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        return [Entry.from_json(i) for i in items if isinstance(i, dict) and "digest" in i]

    def _write(self, entries: list[Entry]) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [e.to_json() for e in entries],
        }
        atomic_write(self.paths.index_json, json.dumps(doc, indent=1).encode() + b"\n")

    def update(self, change: Callable[[list[Entry]], list[Entry]]) -> list[Entry]:
        """Apply `change` to the entries under the index lock; returns the new list."""
        with FileLock(self.paths.images_lock, timeout=LOCK_TIMEOUT, what="image index"):
            entries = change(self.entries())
            self._write(_normalize(entries))
            return entries

    # -------------------------------------------------------------- changes

    def add(
        self,
        digest: str,
        media_type: str,
        size: int,
        name: str | None,
        repo_digest: str | None = None,
        platform: dict[str, str] | None = None,
    ) -> None:
        """Point `name` (or a nameless entry) at the manifest `digest`."""

        def change(entries: list[Entry]) -> list[Entry]:
            for e in entries:
                if name and e.name == name:
                    e.name = None  # the tag moves on; the old image stays, nameless
            keep = [e for e in entries if not (e.digest == digest and e.name is None)]
            old = next((e for e in entries if e.digest == digest and e.repo_digest), None)
            rd = repo_digest or (old.repo_digest if old else None)
            keep.append(Entry(digest, media_type, size, name, rd, platform))
            return keep

        self.update(change)

    def untag(self, name: str) -> str | None:
        """Remove `name`; returns the manifest digest it named (None if unknown)."""
        found: list[str] = []

        def change(entries: list[Entry]) -> list[Entry]:
            for e in entries:
                if e.name == name:
                    found.append(e.digest)
                    e.name = None
            return entries

        self.update(change)
        return found[0] if found else None

    def remove(self, digest: str) -> None:
        """Forget the manifest `digest` entirely (all its names)."""
        self.update(lambda entries: [e for e in entries if e.digest != digest])


def _normalize(entries: list[Entry]) -> list[Entry]:
    """At most one entry per name; a nameless entry only for a manifest without names."""
    named = {e.digest for e in entries if e.name}
    out: list[Entry] = []
    seen_nameless: set[str] = set()
    for e in entries:
        if e.name is None:
            if e.digest in named or e.digest in seen_nameless:
                continue
            seen_nameless.add(e.digest)
        out.append(e)
    return out
