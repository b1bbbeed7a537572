"""Build OCI images in a local OCI layout and push them with skopeo.

- `TarEntry` + `layer_tar(entries)`: a layer made with Python's tarfile (PAX:
  xattrs, long names, owners, modes, whiteouts are just names).
- `gnu_tar_layer(tree)`: a layer made by GNU tar from a real directory (sparse
  files, hard links, xattrs, setuid bits), the way image builders make them.
- `pristine_busybox_layer(parent)`: that of a fresh busybox rootfs made under
  `parent` (the session's shared rootfs gains mount points when tests run on it).
- `compress(tar, "gzip"|"zstd"|"none")` -> (blob, media type).
- `Layout(path)`: `.image(layers, platform)` -> BuiltImage, `.tag(name, image)`,
  `.index(images)`; `push(layout, tag, dest)` copies with skopeo.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class TarEntry:
    name: str
    kind: str = "file"  # file, dir, symlink, hardlink, fifo
    data: bytes = b""
    mode: int = -1  # default: 0o755 for directories, 0o777 for symlinks, else 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)
    mtime: int = 1700000000


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer_tar(entries: list[TarEntry]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            mode = e.mode if e.mode >= 0 else {"dir": 0o755, "symlink": 0o777}.get(e.kind, 0o644)
            info.mode, info.uid, info.gid, info.mtime = mode, e.uid, e.gid, e.mtime
            info.linkname = e.target
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return raw.getvalue()


def gnu_tar_layer(tree: str) -> bytes:
    """GNU tar of a directory's contents (sparse, xattrs, numeric owners), PAX format."""
    return subprocess.run(
        ["tar", "--sparse", "--xattrs", "--xattrs-include=user.*", "--numeric-owner",
         "--format=pax", "--sort=name", "-C", tree, "-cf", "-", "."],
        check=True, capture_output=True,
    ).stdout  # fmt: skip


def pristine_busybox_layer(parent: str | os.PathLike[str]) -> bytes:
    """A busybox rootfs made fresh under `parent` (e.g. tmp_path_factory.mktemp(...)), as a layer."""
    from helpers.rootfs import make_rootfs

    return gnu_tar_layer(make_rootfs(os.path.join(parent, "r")))


def compress(tar: bytes, kind: str = "gzip") -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0), MEDIA[kind]
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(tar), MEDIA[kind]
    return tar, MEDIA["none"]


@dataclass
class BuiltImage:
    manifest: bytes
    config: bytes
    diff_ids: list[str]
    layer_digests: list[str]
    platform: tuple[str, str, str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def id(self) -> str:
        return sha256(self.config)


class Layout:
    """An OCI image layout being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.refs: list[dict[str, object]] = []
        self._write_index()

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return digest

    def image(
        self,
        layers: list[tuple[bytes, str]],
        platform: tuple[str, str, str] = ("linux", "amd64", ""),
        cmd: list[str] | None = None,
        created: str = "2024-01-02T03:04:05Z",
    ) -> BuiltImage:
        """`layers`: (uncompressed tar, compression) lowest first."""
        descs, diff_ids, history = [], [], []
        for tar, kind in layers:
            blob, media_type = compress(tar, kind)
            descs.append({"mediaType": media_type, "digest": self.put(blob), "size": len(blob)})
            diff_ids.append(sha256(tar))
            history.append({"created": created, "created_by": f"layer {len(history)} ({kind})"})
        os_name, arch, variant = platform
        config: dict[str, object] = {
            "architecture": arch,
            "os": os_name,
            "created": created,
            "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        if variant:
            config["variant"] = variant
        config_bytes = json.dumps(config).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.put(config_bytes),
                       "size": len(config_bytes)},
            "layers": descs,
        }  # fmt: skip
        data = json.dumps(manifest).encode()
        self.put(data)
        return BuiltImage(data, config_bytes, diff_ids, [str(d["digest"]) for d in descs], platform)

    def index(self, images: list[BuiltImage]) -> bytes:
        entries = []
        for img in images:
            os_name, arch, variant = img.platform
            plat = {"os": os_name, "architecture": arch}
            if variant:
                plat["variant"] = variant
            entries.append({"mediaType": OCI_MANIFEST, "digest": img.digest,
                            "size": len(img.manifest), "platform": plat})  # fmt: skip
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        self.put(data)
        return data

    def tag(self, name: str, data: bytes, media_type: str = OCI_MANIFEST) -> None:
        self.refs = [r for r in self.refs if r["annotations"] != {"org.opencontainers.image.ref.name": name}]  # type: ignore[comparison-overlap]
        self.refs.append({"mediaType": media_type, "digest": sha256(data), "size": len(data),
                          "annotations": {"org.opencontainers.image.ref.name": name}})  # fmt: skip
        self._write_index()

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}
        (self.path / "index.json").write_text(json.dumps(index))


def skopeo(*args: str, home: str = "/tmp") -> str:
    env = dict(os.environ, HOME=home, XDG_RUNTIME_DIR=home, REGISTRY_AUTH_FILE=f"{home}/auth.json")
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], env=env, check=False,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def push(layout: Layout, tag: str, dest: str, *extra: str) -> None:
    """skopeo copy oci:<layout>:<tag> docker://<dest> (plain HTTP, digests kept)."""
    skopeo("copy", "-q", "--dest-tls-verify=false", "--preserve-digests", *extra,
           f"oci:{layout.path}:{tag}", f"docker://{dest}")  # fmt: skip
