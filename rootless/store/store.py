"""`Store`: the persistent image store, and `ImageRecord`, what the container
runtime needs to know about one image. See docs/storage.md.

Locks: adding content (pull, load) holds `store.lock` shared for the whole
operation; deleting content (rmi, prune, sweeps) holds it exclusively, so a
deletion never races with a pull that is about to reference what it deletes.

Shared stores (rootless.store.shared, rootless.store.stack): read-only image
stores stacked under this one. Lookups search this store first, then each
shared store; writes only ever go to this store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from rootless.errors import ImageError, StoreError
from rootless.paths import StorePaths
from rootless.store.blobs import BlobStore, digest_hex
from rootless.store.images import Entry, ImageIndex
from rootless.store.layers import LayerStore
from rootless.store.locking import FileLock
from rootless.store.ownership import Ownership
from rootless.store.version import check_version, ensure_layout

if TYPE_CHECKING:
    from rootless.image.types import ImageConfig, Manifest

DELETE_LOCK_TIMEOUT = 60.0
T = TypeVar("T")


class NoSuchImageError(ImageError):
    """No image matches a name or id."""


@dataclass(frozen=True)
class ImageRecord:
    """One image in the store (one manifest)."""

    id: str  # the config digest, "sha256:<hex>" (docker's image ID)
    manifest_digest: str
    media_type: str
    manifest: Manifest
    config: ImageConfig
    config_digest: str
    diff_ids: tuple[str, ...]
    layers: tuple[str, ...]  # diff directories, lowest first
    names: tuple[str, ...]  # full references, e.g. docker.io/library/busybox:latest
    repo_digests: tuple[str, ...]  # name@sha256:...
    created: str  # the config's RFC 3339 creation time ("" if unknown)
    size: int  # sum of the uncompressed layer sizes
    read_only: bool = False  # named by a shared (read-only) store, not the user's own
    store_root: str = ""  # the store whose index.json names it

    @property
    def short_id(self) -> str:
        return digest_hex(self.id)[:12]


class Store:
    """An opened store. `Store.open(root)` creates it when missing.

    `shared`: read-only stores stacked under this one (`Store.open` takes them
    from the configuration unless told); `read_only`: this is one of them."""

    def __init__(
        self,
        paths: StorePaths,
        ownership: Ownership | None = None,
        shared: Sequence[Store] = (),
        *,
        read_only: bool = False,
    ) -> None:
        self.paths = paths
        self._ownership = ownership
        self.read_only = read_only
        self.shared: tuple[Store, ...] = tuple(shared)
        self.index = ImageIndex(paths)
        self._layers: LayerStore | None = None
        self.blobs: BlobStore
        if self.shared:
            from rootless.store.stack import StackedBlobStore

            self.blobs = StackedBlobStore(paths, [s.blobs for s in self.shared])
        else:
            self.blobs = BlobStore(paths)

    @classmethod
    def open(
        cls,
        root: str,
        *,
        create: bool = True,
        ownership: Ownership | None = None,
        shared: Sequence[str] | None = None,
    ) -> Store:
        """Open (and with `create`, make) the store at `root`, stacked on the shared
        stores `shared` (default: the configured ones, rootless.store.shared)."""
        paths = StorePaths(root)
        _check_owner(root, writing=create)
        if create:
            try:
                ensure_layout(paths)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store in {root}: {exc.strerror}",
                    hint="pass --root to a directory you can write",
                ) from exc
        if os.path.isdir(root):
            check_version(paths, create=create)
        if shared is None:
            from rootless.store.shared import image_stores

            shared = image_stores()
        stores: list[Store] = []
        if shared:
            from rootless.store.stack import READ_ONLY, open_shared

            stores = [
                cls(p, Ownership(READ_ONLY), read_only=True) for _, p in open_shared(shared, root)
            ]
        return cls(paths, ownership, stores)

    @property
    def root(self) -> str:
        return self.paths.root

    @property
    def ownership(self) -> Ownership:
        if self._ownership is None:
            self._ownership = Ownership.detect()
        return self._ownership

    @property
    def layers(self) -> LayerStore:
        if self._layers is None:
            if self.shared:
                from rootless.store.stack import StackedLayerStore

                self._layers = StackedLayerStore(
                    self.paths, self.ownership, [s.layers for s in self.shared]
                )
            else:
                self._layers = LayerStore(self.paths, self.ownership)
        return self._layers

    def lock(self, *, shared: bool, timeout: float | None = None) -> FileLock:
        """The store lock: shared to add content, exclusive to delete it."""
        if self.read_only:
            from rootless.store.stack import ReadOnlyStoreError

            raise ReadOnlyStoreError(f"the image store {self.root} is read-only (a shared store)")
        return FileLock(self.paths.store_lock, shared=shared, timeout=timeout, what="image store")

    def delete_lock(self) -> FileLock:
        return self.lock(shared=False, timeout=DELETE_LOCK_TIMEOUT)

    # -------------------------------------------------------------- images

    def images(self) -> list[ImageRecord]:
        """Every image (see `_images`), read again if an rmi swept one meanwhile."""
        return self._reread(self._images)

    def _reread(self, read: Callable[[], T]) -> T:
        """Readers take no lock: `read()` may find an image in index.json whose
        blobs a concurrent rmi sweeps before it reads them (rmi removes the entry
        first). A missing blob is an error only when index.json did not change
        meanwhile; else read again."""
        for _ in range(5):
            before = _stamp(self.paths.index_json)
            try:
                return read()
            except StoreError:
                if _stamp(self.paths.index_json) == before:
                    raise
        return read()

    def _images(self) -> list[ImageRecord]:
        """Every image, newest entry last (index order), one record per manifest;
        then those of each shared store (read_only), less the names a store
        above already has (they resolve there) and less the manifests already
        listed without any name left."""
        out = [self._record(d, entries) for d, entries in _manifests(self)]
        claimed = {n for r in out for n in r.names}
        listed = {r.manifest_digest for r in out}
        for store in self.shared:
            for digest, entries in _manifests(store):
                try:
                    record = self._record(digest, entries, store)
                except StoreError as exc:
                    from rootless import log

                    log.warning(f"{store.root}: image {digest[7:19]}: {exc.message}")
                    continue
                names = tuple(n for n in record.names if n not in claimed)
                if not names and digest in listed:
                    continue
                claimed.update(names)
                listed.add(digest)
                out.append(replace(record, names=names))
        return out

    def image(self, ref_or_id: str) -> ImageRecord:
        """Resolve a name, `name@digest`, manifest digest, or (a prefix of) an image
        ID; in this store first, then in each shared store."""

        def read() -> ImageRecord:
            owner, digest, entries = self.locate(ref_or_id)
            return self._record(digest, entries, owner)

        return self._reread(read)

    def resolve(self, text: str, entries: list[Entry] | None = None) -> str:
        """The manifest digest `text` names: in `entries` (this store's index)
        when given, else in this store and then the shared ones."""
        if entries is None:
            return self.locate(text)[1]
        digest = _by_name(text, entries)
        if digest is None:
            digest = self._by_id(text, entries)
        if digest is None:
            raise NoSuchImageError(f"no such image: {text}")
        return digest

    def locate(self, text: str) -> tuple[Store, str, list[Entry]]:
        """(the store whose index names `text`, the manifest digest, that index).
        Names win over ID prefixes in every store; then this store wins."""
        stores = [self, *self.shared]
        indexes = [(s, s.index.entries()) for s in stores]
        for store, entries in indexes:
            digest = _by_name(text, entries)
            if digest is not None:
                return store, digest, entries
        for store, entries in indexes:
            digest = self._by_id(text, entries)
            if digest is not None:
                return store, digest, entries
        raise NoSuchImageError(f"no such image: {text}")

    def _by_id(self, text: str, entries: list[Entry]) -> str | None:
        want = text.removeprefix("sha256:")
        if not want or len(want) > 64 or any(c not in "0123456789abcdef" for c in want):
            return None
        matches: dict[str, str] = {}  # image id -> manifest digest
        for e in entries:
            if digest_hex(e.digest) == want:
                return e.digest
            config = self._config_digest(e.digest)
            if config and digest_hex(config).startswith(want):
                matches.setdefault(config, e.digest)
        if len(matches) > 1:
            raise ImageError(f"image ID {text!r} is ambiguous: it matches {len(matches)} images")
        return next(iter(matches.values()), None)

    def _config_digest(self, manifest_digest: str) -> str | None:
        try:
            obj = json.loads(self.blobs.read(manifest_digest, verify=False))
            return str(obj["config"]["digest"])
        except (StoreError, ValueError, KeyError, TypeError):
            return None

    def _record(
        self, manifest_digest: str, entries: list[Entry], owner: Store | None = None
    ) -> ImageRecord:
        from rootless.image.manifest import parse_image_config, parse_manifest
        from rootless.image.types import Manifest

        mine = [e for e in entries if e.digest == manifest_digest]
        media_type = mine[0].media_type if mine else ""
        manifest = parse_manifest(self.blobs.read(manifest_digest), media_type or None)
        if not isinstance(manifest, Manifest):
            raise StoreError(f"{manifest_digest} in the store is not an image manifest")
        config_digest = manifest.config.digest
        config = parse_image_config(self.blobs.read(config_digest))
        size = 0
        for diff_id in config.diff_ids:
            info = self.layers.info(diff_id)
            size += info.size if info else 0
        return ImageRecord(
            id=config_digest,
            manifest_digest=manifest_digest,
            media_type=manifest.media_type,
            manifest=manifest,
            config=config,
            config_digest=config_digest,
            diff_ids=config.diff_ids,
            layers=tuple(self.layers.diff_dir(d) for d in config.diff_ids),
            names=tuple(e.name for e in mine if e.name),
            repo_digests=tuple(sorted({e.repo_digest for e in mine if e.repo_digest})),
            created=config.created,
            size=size,
            read_only=owner is not None and owner is not self,
            store_root=(owner or self).root,
        )

    # -------------------------------------------------------------- runtime API

    def layer_dirs(self, image: ImageRecord) -> list[str]:
        """The image's unpacked layer directories, lowest first; all complete."""
        for diff_id in image.diff_ids:
            if not self.layers.has(diff_id):
                raise StoreError(
                    f"layer {digest_hex(diff_id)[:12]} of image {image.short_id} is missing",
                    hint="pull the image again",
                )
        return list(image.layers)

    def layer_links(self, image: ImageRecord) -> list[str]:
        """Short names of the layer directories, lowest first, relative to
        `paths.layers` ("l/<26 chars>"; an absolute path for a layer used from a
        shared store): for overlay lowerdir= options."""
        from rootless.store.stack import lower_link

        return [lower_link(self.layers, diff_id) for diff_id in image.diff_ids]

    def users_of(self, image_id: str) -> list[str]:
        """Ids of the containers (running or not) created from image `image_id`:
        every `containers/<id>/config.json` whose "image_id" names it."""
        want = image_id.split(":", 1)[-1]
        users = []
        try:
            names = sorted(os.listdir(self.paths.containers))
        except FileNotFoundError:
            return []
        for name in names:
            try:
                with open(self.paths.container_config(name), "rb") as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(obj, dict) and str(obj.get("image_id", "")).split(":", 1)[-1] == want:
                users.append(str(obj.get("id", name)))
        return users

    def container_image_ids(self) -> set[str]:
        """The image ids every container refers to (GC roots)."""
        ids = set()
        try:
            names = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return set()
        for name in names:
            try:
                with open(self.paths.container_config(name), "rb") as f:
                    obj = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(obj, dict) and obj.get("image_id"):
                iid = str(obj["image_id"])
                ids.add(iid if ":" in iid else "sha256:" + iid)
        return ids


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _check_owner(root: str, *, writing: bool) -> None:
    """Refuse another user's store with one clear line: one store per user."""
    try:
        st = os.stat(root)
    except OSError:
        return  # missing (created later) or unreachable (reported when read)
    if st.st_uid == os.getuid():
        return
    if writing or not os.access(root, os.R_OK | os.X_OK):
        raise StoreError(
            f"cannot use the store {root}: permission denied (it belongs to uid {st.st_uid})",
            hint="every user has their own store: leave out --root, or pass a directory you own",
        )


def normalize_name(text: str) -> str:
    """`busybox` -> `docker.io/library/busybox:latest` (a tag, never a digest)."""
    from rootless.image.reference import Reference

    ref = Reference.parse(text)
    if ref.digest:
        raise ImageError(f"{text!r} is a digest reference: a tag is needed here")
    return f"{ref.name}:{ref.tag}"


def _by_name(text: str, entries: list[Entry]) -> str | None:
    from rootless.errors import InvalidReferenceError
    from rootless.image.reference import Reference

    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        return None
    if ref.digest:
        pinned = f"{ref.name}@{ref.digest}"
        for e in entries:
            if e.repo_digest == pinned or (e.digest == ref.digest and _same_repo(e, ref.name)):
                return e.digest
        return None
    full = f"{ref.name}:{ref.tag}"
    return next((e.digest for e in entries if e.name == full), None)


def _same_repo(entry: Entry, name: str) -> bool:
    if entry.name and entry.name.rsplit(":", 1)[0] == name:
        return True
    return bool(entry.repo_digest and entry.repo_digest.split("@", 1)[0] == name)


def _manifests(store: Store) -> list[tuple[str, list[Entry]]]:
    """Each manifest digest of the store's index once, in index order, with the index."""
    entries = store.index.entries()
    order: list[str] = []
    for e in entries:
        if e.digest not in order:
            order.append(e.digest)
    return [(d, entries) for d in order]
