"""Image archives: docker-archive and oci-archive, read by `load` and written by `save`.

Reading. The archive is indexed, not extracted: `TarIndex` lists the members of a
seekable tar and reads them in place with `pread` (layers are read by several
threads at once). A compressed archive (gzip, zstd, xz, bzip2) or one read from a
pipe is first spooled, uncompressed, to an unlinked file in the store's
`blobs/tmp`. Recognised layouts:

- docker-archive: `manifest.json` ([{Config, RepoTags, Layers}]) with the config
  and layer tars it names: the `<id>/layer.tar` layout of docker < 25 (symlinked
  duplicate layers included), the `<hex>.tar` layout of podman and skopeo, and the
  OCI layout inside docker 25+ archives (`blobs/sha256/...`);
- oci-archive: `oci-layout` + `index.json` + `blobs/<alg>/<hex>`, names from
  `io.containerd.image.name` or a full `org.opencontainers.image.ref.name`; an
  index entry that is itself an index picks the host's platform.

Every manifest and config is parsed and every named member checked before the
store is touched; then each image is stored like a pull does it (layers in
parallel, blobs, then the names last), so a bad archive leaves no image behind.

Writing. `save` streams a tar: docker-archive (`<config-hex>.json`, one
uncompressed `<diffid-hex>.tar` per layer, `manifest.json`, `repositories`) or
oci-archive (the stored manifest, config and compressed layer blobs byte for
byte, so digests are kept, and `index.json` with one entry per name).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import stat
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

from rootless.errors import DigestMismatchError, ImageError, ManifestError, StoreError
from rootless.image.layerio import CHUNK, Inflater, LayerSource, ingest_layer, iter_tar, sniff
from rootless.image.limits import LayerLimits
from rootless.image.types import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDIST_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
)

if TYPE_CHECKING:
    from rootless.store import ImageRecord, Store

JSON_MAX = 8 << 20
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
DOCKER_ARCHIVE, OCI_ARCHIVE = "docker-archive", "oci-archive"
FORMATS = (DOCKER_ARCHIVE, OCI_ARCHIVE)
LOAD_JOBS = 4


class ArchiveError(ImageError):
    """An archive is unreadable, truncated, or not an image archive."""


# ---------------------------------------------------------------- the tar index


class _Slice:
    """A member's data read in place (`pread`: threads share the descriptor)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.pos, self.end = fd, offset, offset + size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.end - self.pos:
            n = self.end - self.pos
        if n <= 0:
            return b""
        data = os.pread(self.fd, n, self.pos)
        if not data:
            raise ArchiveError("the archive is truncated")
        self.pos += len(data)
        return data


def _clean(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


class TarIndex:
    """The members of a seekable, uncompressed tar, by normalised name."""

    def __init__(self, fd: int, label: str) -> None:
        self.fd = fd
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        size = os.fstat(fd).st_size
        with os.fdopen(os.dup(fd), "rb") as f:
            f.seek(0)
            try:
                with tarfile.open(fileobj=f, mode="r:") as tar:
                    for info in tar:
                        self.members[_clean(info.name)] = info
            except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
                raise ArchiveError(f"{label} is not a readable tar archive ({exc})") from None
        for info in self.members.values():
            if info.isreg() and info.offset_data + info.size > size:
                raise ArchiveError(f"{label} is truncated (member {info.name!r} is cut short)")
        if not self.members:
            raise ArchiveError(f"{label} is empty or not a tar archive")

    def resolve(self, name: str) -> tarfile.TarInfo:
        """The regular file `name` names, following links inside the archive."""
        key = _clean(name)
        for _ in range(16):
            info = self.members.get(key)
            if info is None:
                raise ArchiveError(f"{self.label}: {name!r} is missing from the archive")
            if info.isreg():
                return info
            if info.issym():
                key = _clean(posixpath.join(posixpath.dirname(key), info.linkname))
            elif info.islnk():
                key = _clean(info.linkname)
            else:
                raise ArchiveError(f"{self.label}: {name!r} is not a file")
        raise ArchiveError(f"{self.label}: {name!r}: too many levels of links")

    def has(self, name: str) -> bool:
        return _clean(name) in self.members

    def open(self, name: str) -> _Slice:
        info = self.resolve(name)
        return _Slice(self.fd, info.offset_data, info.size)

    def read(self, name: str, limit: int = JSON_MAX) -> bytes:
        info = self.resolve(name)
        if info.size > limit:
            raise ArchiveError(f"{self.label}: {name!r} is {info.size} bytes, over the limit")
        return self.open(name).read()

    def json(self, name: str) -> object:
        try:
            return json.loads(self.read(name))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ArchiveError(f"{self.label}: {name!r} is not valid JSON ({exc})") from None


# ---------------------------------------------------------------- opening input


@contextlib.contextmanager
def open_archive(path: str, spool_dir: str) -> Iterator[TarIndex]:
    """Index the archive at `path` ("-": stdin); spool it when needed."""
    label = "standard input" if path == "-" else path
    src = _open_input(path)
    try:
        head = _peek(src, 8)
        kind = sniff(head)
        if kind == "none" and _seekable_file(src.fileno()):
            yield TarIndex(src.fileno(), label)
            return
        fd = _spool(src, head, kind, spool_dir, label)
        try:
            yield TarIndex(fd, label)
        finally:
            os.close(fd)
    finally:
        if path != "-":
            src.close()


def _open_input(path: str) -> BinaryIO:
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise ArchiveError(
                "no archive given: standard input is a terminal", hint="pass -i FILE"
            )
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ArchiveError(f"cannot open {path}: {exc.strerror}") from None


def _peek(src: BinaryIO, n: int) -> bytes:
    fd = src.fileno()
    if _seekable_file(fd):
        return os.pread(fd, n, os.lseek(fd, 0, os.SEEK_CUR))
    return b""  # a pipe: _spool sniffs the first chunk itself


def _seekable_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _tmpfile(directory: str) -> int:
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f"archive.{os.getpid()}.", dir=directory)
        os.unlink(name)
        return fd


def _spool(src: BinaryIO, head: bytes, kind: str, directory: str, label: str) -> int:
    """Copy (and decompress) the input to an unlinked temporary file."""
    os.makedirs(directory, exist_ok=True)
    fd = _tmpfile(directory)
    try:
        _copy_inflated(src, fd, kind, label)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_inflated(src: BinaryIO, fd: int, kind: str, label: str) -> None:
    limits = LayerLimits.from_environment()
    inflater: Inflater | None = None
    first = True
    size = 0
    while chunk := src.read(CHUNK):
        if first:
            first = False
            kind = sniff(chunk) if kind == "none" else kind
            inflater = Inflater(kind)
        assert inflater is not None
        try:
            out = inflater.feed(chunk)
        except Exception as exc:  # noqa: BLE001 - codec errors differ per codec
            raise ArchiveError(f"{label}: corrupt {kind} data ({exc})") from None
        size += len(out)
        limits.check_archive(size, label)
        _write_all(fd, out)
    if inflater is not None and not inflater.ended:
        raise ArchiveError(f"{label} is truncated (the {kind} stream ends early)")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------- plans


@dataclass
class ImagePlan:
    """One image of an archive, checked and ready to be stored."""

    names: list[str]
    config: bytes
    parsed: ImageConfig
    layers: list[LayerSource]
    oci: bool
    manifest: bytes | None = None  # oci-archive: the manifest as it is in the archive
    manifest_media_type: str = DOCKER_MANIFEST
    where: str = ""

    @property
    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()


def read_plans(index: TarIndex) -> list[ImagePlan]:
    """Every image in the archive (docker-archive or oci-archive)."""
    if index.has("manifest.json"):
        plans = _docker_plans(index)
    elif index.has("index.json"):
        plans = _oci_plans(index)
    elif index.has("repositories"):
        raise ArchiveError(
            f"{index.label} uses the docker save format of docker < 1.10 (no manifest.json), "
            "which is not supported",
            hint="save it again with a current docker, podman or skopeo",
        )
    else:
        raise ArchiveError(
            f"{index.label} is not an image archive (no manifest.json or index.json)"
        )
    if not plans:
        raise ArchiveError(f"{index.label} contains no images")
    return plans


def _full_name(text: str, where: str) -> str:
    from rootless.store import normalize_name

    try:
        return normalize_name(text)
    except ImageError as exc:
        raise ArchiveError(f"{where}: bad image name {text!r} ({exc.message})") from None


def _config(index: TarIndex, member: str, where: str) -> tuple[bytes, ImageConfig]:
    from rootless.image.manifest import parse_image_config

    data = index.read(member)
    return data, parse_image_config(data, context=f"{where}: config {member}")


def _docker_plans(index: TarIndex) -> list[ImagePlan]:
    entries = index.json("manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError(f"{index.label}: manifest.json is not a list")
    return [_docker_plan(index, e, i) for i, e in enumerate(entries)]


def _strings(obj: dict[str, object], key: str, where: str) -> list[str]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArchiveError(f"{where}: {key} is not a list of strings")
    return [str(v) for v in value]


def _docker_plan(index: TarIndex, entry: object, i: int) -> ImagePlan:
    where = f"{index.label}: manifest.json entry {i}"
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise ArchiveError(f"{where} has no Config")
    tags = _strings(entry, "RepoTags", where)
    layers = _strings(entry, "Layers", where)
    data, parsed = _config(index, str(entry["Config"]), where)
    if len(parsed.diff_ids) != len(layers):
        raise ArchiveError(
            f"{where}: {len(layers)} layers but the config lists {len(parsed.diff_ids)} diff_ids"
        )
    names = [_full_name(t, where) for t in tags]
    label = tags[0] if tags else str(entry["Config"])
    sources = []
    for member, diff_id in zip(layers, parsed.diff_ids, strict=True):
        info = index.resolve(member)
        sources.append(
            LayerSource(
                open=_opener(index, member),
                diff_id=diff_id,
                what=f"layer {member} of {label}",
                size_hint=info.size,
            )
        )
    return ImagePlan(names, data, parsed, sources, oci=False, where=label)


def _opener(index: TarIndex, member: str) -> Callable[[], _Slice]:
    return lambda: index.open(member)


def _blob_member(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _read_blob(index: TarIndex, desc: Descriptor, where: str) -> bytes:
    data = index.read(_blob_member(desc.digest))
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != desc.digest or len(data) != desc.size:
        raise DigestMismatchError(f"{where}: blob {desc.digest} has digest {actual}")
    return data


def _oci_plans(index: TarIndex) -> list[ImagePlan]:
    from rootless.image.manifest import parse_manifest

    raw = index.read("index.json")
    top = parse_manifest(raw, OCI_INDEX, context=f"{index.label}: index.json")
    if not isinstance(top, Index):
        raise ArchiveError(f"{index.label}: index.json is not an image index")
    by_digest: dict[str, ImagePlan] = {}
    for desc in top.manifests:
        name = _oci_name(desc, index.label)
        plan = by_digest.get(desc.digest)
        if plan is None:
            plan = _oci_plan(index, desc, name or desc.digest)
            by_digest[desc.digest] = plan
        if name and name not in plan.names:
            plan.names.append(name)
    return list(by_digest.values())


def _oci_name(desc: Descriptor, where: str) -> str | None:
    """The image name an index entry carries; a bare tag ("latest") names nothing."""
    name = desc.annotations.get(CONTAINERD_NAME) or desc.annotations.get(REF_NAME) or ""
    if not name or ("/" not in name and ":" not in name):
        return None
    return _full_name(name, where)


def _oci_plan(index: TarIndex, desc: Descriptor, label: str) -> ImagePlan:
    from rootless.image.manifest import host_platform, parse_manifest, select_platform

    where = f"{index.label}: {label}"
    data = _read_blob(index, desc, where)
    parsed = parse_manifest(data, desc.media_type or None, context=where)
    if isinstance(parsed, Index):
        chosen = select_platform(parsed, host_platform(), context=where)
        data = _read_blob(index, chosen, where)
        parsed = parse_manifest(data, chosen.media_type or None, context=where)
    if not isinstance(parsed, Manifest):
        raise ManifestError(f"{where}: not an image manifest")
    config = _read_blob(index, parsed.config, where)
    _, config_parsed = _config_bytes(config, where)
    if len(config_parsed.diff_ids) != len(parsed.layers):
        raise ArchiveError(f"{where}: the manifest and config disagree on the layer count")
    sources = []
    for layer, diff_id in zip(parsed.layers, config_parsed.diff_ids, strict=True):
        member = _blob_member(layer.digest)
        index.resolve(member)
        what = f"layer {layer.digest[7:19]} of {label}"
        src = LayerSource(_opener(index, member), diff_id, what, layer, layer.size)
        sources.append(src)
    return ImagePlan([], config, config_parsed, sources, oci=True, manifest=data,
                     manifest_media_type=parsed.media_type, where=label)  # fmt: skip


def _config_bytes(data: bytes, where: str) -> tuple[bytes, ImageConfig]:
    from rootless.image.manifest import parse_image_config

    return data, parse_image_config(data, context=f"{where}: config")


# ---------------------------------------------------------------- load


class LoadProgress(Protocol):
    """What load reports (the CLI draws it on a terminal)."""

    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None: ...


class NoLoadProgress:
    def layer(self, digest: str, status: str, current: int = 0, total: int = 0) -> None:
        pass


@dataclass
class Loaded:
    id: str
    names: list[str] = field(default_factory=list)


def load(store: Store, path: str, progress: LoadProgress | None = None) -> list[Loaded]:
    """Load every image of the archive at `path` ("-": stdin) into the store."""
    progress = progress or NoLoadProgress()
    try:
        with open_archive(path, store.paths.blobs_tmp) as index:
            plans = read_plans(index)
            with store.lock(shared=True):
                store.blobs.sweep_tmp()
                return [store_plan(store, plan, progress) for plan in plans]
    except OSError as exc:
        raise _os_error(store, exc) from exc


def _os_error(store: Store, exc: OSError) -> BaseException:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"no space left on the device holding {store.root}",
            hint="free some space (rootless image prune) and try again",
        )
    return StoreError(f"loading the archive: {exc}")


def store_plan(store: Store, plan: ImagePlan, progress: LoadProgress) -> Loaded:
    """Store one image: layers (in parallel), config, manifest, then its names."""
    descs = _ingest_all(store, plan, progress)
    config_digest = store.blobs.put(plan.config)
    if plan.manifest is not None:
        manifest = plan.manifest
        media_type = plan.manifest_media_type
    else:
        manifest = docker_manifest(config_digest, len(plan.config), descs)
        media_type = DOCKER_MANIFEST
    digest = store.blobs.put(manifest)
    platform = {"os": plan.parsed.os, "architecture": plan.parsed.architecture}
    if plan.parsed.variant:
        platform["variant"] = plan.parsed.variant
    names: list[str | None] = list(plan.names) or [None]  # None: a nameless entry
    for name in names:
        store.index.add(digest, media_type, len(manifest), name, platform=platform)
    return Loaded(config_digest, list(plan.names))


def docker_manifest(config_digest: str, config_size: int, layers: list[Descriptor]) -> bytes:
    from rootless.image.manifest import manifest_to_json

    manifest = Manifest(
        media_type=DOCKER_MANIFEST,
        config=Descriptor(DOCKER_CONFIG, config_digest, config_size),
        layers=tuple(layers),
    )
    return manifest_to_json(manifest)


def _ingest_all(store: Store, plan: ImagePlan, progress: LoadProgress) -> list[Descriptor]:
    def one(src: LayerSource) -> Descriptor:
        key = src.diff_id
        total = src.size_hint
        progress.layer(key, "Loading layer", 0, total)
        desc = ingest_layer(
            store,
            src,
            oci=plan.oci,
            report=lambda n: progress.layer(key, "Loading layer", n, total),
        )
        progress.layer(key, "Loaded", total, total)
        return desc

    if len(plan.layers) <= 1:
        return [one(s) for s in plan.layers]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(LOAD_JOBS, len(plan.layers))) as pool:
        futures = [pool.submit(one, s) for s in plan.layers]
        return [f.result() for f in futures]


# ---------------------------------------------------------------- save


@dataclass
class _Saved:
    record: ImageRecord
    names: list[str]


def select_images(store: Store, texts: list[str], by_id: bool = False) -> list[_Saved]:
    """Resolve every argument first (nothing is written when one is unknown);
    an image named twice is saved once with both names. `by_id`: one entry per
    image ID (docker-archive), else per manifest."""
    from rootless.errors import InvalidReferenceError
    from rootless.image.reference import Reference

    out: dict[str, _Saved] = {}
    for text in texts:
        record = store.image(text)
        try:
            ref = Reference.parse(text)
            full = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else ""
        except InvalidReferenceError:
            full = ""
        names = [full] if full in record.names else list(record.names)
        key = record.id if by_id else record.manifest_digest
        saved = out.setdefault(key, _Saved(record, []))
        saved.names += [n for n in names if n not in saved.names]
    return list(out.values())


class TarWriter:
    """A tar stream written member by member (no seeking: a pipe is fine)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.written: set[str] = set()

    def _header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mtime = size, kind, 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uname = info.gname = ""
        self.out.write(info.tobuf(tarfile.PAX_FORMAT))

    def directory(self, name: str) -> None:
        if name not in self.written:
            self.written.add(name)
            self._header(name.rstrip("/") + "/", 0, tarfile.DIRTYPE)

    def add(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), [data])

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        if name in self.written:
            return
        self.written.add(name)
        self._header(name, size)
        done = 0
        for chunk in chunks:
            done += len(chunk)
            if done > size:
                raise StoreError(f"{name}: more data than the {size} bytes recorded")
            self.out.write(chunk)
        if done != size:
            raise StoreError(f"{name}: {done} bytes instead of the {size} recorded")
        pad = -size % tarfile.BLOCKSIZE
        if pad:
            self.out.write(b"\0" * pad)

    def close(self) -> None:
        self.out.write(b"\0" * (tarfile.BLOCKSIZE * 2))
        self.out.flush()


def _check_blobs(store: Store, images: list[_Saved], fmt: str) -> None:
    for saved in images:
        rec = saved.record
        for desc, diff_id in zip(rec.manifest.layers, rec.diff_ids, strict=True):
            if not store.blobs.has(desc.digest):
                raise StoreError(
                    f"cannot save {rec.short_id}: the compressed blob of layer "
                    f"{diff_id[7:19]} is missing from the store",
                    hint="pull the image again",
                )
            if fmt == DOCKER_ARCHIVE and store.layers.info(diff_id) is None:
                raise StoreError(f"cannot save {rec.short_id}: layer {diff_id[7:19]} is missing")


def save(store: Store, texts: list[str], fmt: str, out: IO[bytes]) -> list[str]:
    """Write the images named by `texts` to `out`; returns the names saved."""
    if fmt not in FORMATS:
        raise ImageError(f"unknown archive format {fmt!r}: use {' or '.join(FORMATS)}")
    images = select_images(store, texts, by_id=fmt == DOCKER_ARCHIVE)
    _check_blobs(store, images, fmt)
    writer = TarWriter(out)
    if fmt == DOCKER_ARCHIVE:
        _write_docker(store, images, writer)
    else:
        _write_oci(store, images, writer)
    writer.close()
    return [n for s in images for n in s.names]


def _write_docker(store: Store, images: list[_Saved], writer: TarWriter) -> None:
    entries: list[dict[str, object]] = []
    repositories: dict[str, dict[str, str]] = {}
    for saved in images:
        rec = saved.record
        layer_names = []
        for desc, diff_id in zip(rec.manifest.layers, rec.diff_ids, strict=True):
            info = store.layers.info(diff_id)
            assert info is not None  # checked by _check_blobs
            member = f"{diff_id[7:]}.tar"
            chunks = iter_tar(store.blobs.path(desc.digest), desc.media_type, diff_id, info.size)
            writer.add_stream(member, info.size, chunks)
            layer_names.append(member)
        config_member = f"{rec.id[7:]}.json"
        writer.add(config_member, store.blobs.read(rec.config_digest))
        tags = list(saved.names)  # fully qualified, as skopeo writes them: podman
        # reads a bare "name:tag" as localhost/name:tag; docker accepts both
        entries.append({"Config": config_member, "RepoTags": tags, "Layers": layer_names})
        for tag in tags:
            repo, _, version = tag.rpartition(":")
            top = rec.diff_ids[-1][7:] if rec.diff_ids else rec.id[7:]
            repositories.setdefault(repo, {})[version] = top
    writer.add("manifest.json", json.dumps(entries, separators=(",", ":")).encode())
    writer.add("repositories", json.dumps(repositories, separators=(",", ":")).encode())


def _write_blob(store: Store, writer: TarWriter, digest: str) -> None:
    member = _blob_member(digest)
    if member in writer.written:
        return
    path = store.blobs.path(digest)
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        writer.add_stream(member, size, iter(lambda: f.read(CHUNK), b""))


def _write_oci(store: Store, images: list[_Saved], writer: TarWriter) -> None:
    writer.add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    writer.directory("blobs")
    writer.directory("blobs/sha256")
    entries: list[dict[str, object]] = []
    for saved in images:
        rec = saved.record
        for desc in rec.manifest.layers:
            _write_blob(store, writer, desc.digest)
        _write_blob(store, writer, rec.config_digest)
        media_type, manifest = oci_manifest(rec, store.blobs.read(rec.manifest_digest))
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        writer.add(_blob_member(digest), manifest)
        base: dict[str, object] = {"mediaType": media_type, "digest": digest, "size": len(manifest)}
        for name in saved.names or [""]:
            entry = dict(base)
            if name:
                entry["annotations"] = {REF_NAME: name, CONTAINERD_NAME: name}
            entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    writer.add("index.json", json.dumps(index, separators=(",", ":")).encode())


_TO_OCI = {
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_FOREIGN_LAYER: OCI_LAYER_NONDIST_GZIP,
}


def oci_manifest(rec: ImageRecord, data: bytes) -> tuple[str, bytes]:
    """The manifest for an OCI layout: the stored bytes when they are OCI already
    (the digest is kept), else the Docker schema 2 manifest rewritten with OCI
    media types (OCI tools skip Docker manifests in an index.json)."""
    from dataclasses import replace

    from rootless.image.manifest import manifest_to_json

    if rec.media_type == OCI_MANIFEST:
        return OCI_MANIFEST, data
    m = rec.manifest
    converted = Manifest(
        media_type=OCI_MANIFEST,
        config=replace(m.config, media_type=_TO_OCI.get(m.config.media_type, OCI_CONFIG)),
        layers=tuple(
            replace(d, media_type=_TO_OCI.get(d.media_type, d.media_type)) for d in m.layers
        ),
        annotations=m.annotations,
    )
    return OCI_MANIFEST, manifest_to_json(converted)


def save_to_path(store: Store, texts: list[str], fmt: str, path: str) -> list[str]:
    """`save` into a file, atomically: a temporary file renamed over `path` at the end."""
    from rootless.store.locking import replacing

    with replacing(path) as tmp, open(tmp, "wb", buffering=CHUNK) as f:
        names = save(store, texts, fmt, f)
    return names


__all__ = [
    "DOCKER_ARCHIVE",
    "FORMATS",
    "INDEX_TYPES",
    "OCI_ARCHIVE",
    "ArchiveError",
    "ImagePlan",
    "LoadProgress",
    "Loaded",
    "TarIndex",
    "load",
    "open_archive",
    "read_plans",
    "save",
    "save_to_path",
    "store_plan",
]
