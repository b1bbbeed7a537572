"""Check an image store's consistency from the outside (the crash-safety and
concurrency tests run it after killing or racing commands).

`problems(root)` returns what is wrong, as sentences (empty: consistent):

- index.json parses; every entry's manifest blob exists and is whole, and so
  are its config and layer blobs;
- every layer the config lists (by diffID) is complete: layer.json, no
  `incomplete` marker, a diff/ directory holding at least the entries it
  records, and its short link `layers/l/<link>` pointing at it;
- every blob in blobs/sha256 is whole (its sha256 is its name): a blob is only
  renamed there once written;
- every container's config.json parses; a container made from an image still
  has that image's config blob and complete layers, and its `lower` links;
- no half-removed container is listed (a directory without config.json).

Leftovers that nothing uses (temporary files, incomplete layers, unreferenced
blobs) are allowed: the next command or `image prune` sweeps them.
`leftovers(root)` lists them for tests that check a sweep.
"""

from __future__ import annotations

import hashlib
import json
import os

HEX = set("0123456789abcdef")


def _is_hex64(name: str) -> bool:
    return len(name) == 64 and set(name) <= HEX


def _hexpart(digest: object) -> str | None:
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return None
    hexd = digest[7:]
    return hexd if _is_hex64(hexd) else None


class _Checker:
    def __init__(self, root: str) -> None:
        self.root = root
        self.problems: list[str] = []
        self._whole: dict[str, bool] = {}

    def bad(self, text: str) -> None:
        self.problems.append(text)

    # blobs ---------------------------------------------------------------
    def blob_path(self, hexd: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", hexd)

    def blob_whole(self, hexd: str) -> bool:
        if hexd not in self._whole:
            h = hashlib.sha256()
            try:
                with open(self.blob_path(hexd), "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                self._whole[hexd] = h.hexdigest() == hexd
            except FileNotFoundError:
                self._whole[hexd] = False
        return self._whole[hexd]

    def need_blob(self, digest: object, what: str, size: object = None) -> bytes | None:
        hexd = _hexpart(digest)
        if hexd is None:
            self.bad(f"{what}: bad digest {digest!r}")
            return None
        path = self.blob_path(hexd)
        if not os.path.exists(path):
            self.bad(f"{what}: blob {hexd[:12]} is missing")
            return None
        if isinstance(size, int) and os.path.getsize(path) != size:
            self.bad(f"{what}: blob {hexd[:12]} has {os.path.getsize(path)} bytes, expected {size}")
        if not self.blob_whole(hexd):
            self.bad(f"{what}: blob {hexd[:12]} is not whole (sha256 differs)")
            return None
        if os.path.getsize(path) < 1 << 16:
            with open(path, "rb") as f:
                return f.read()
        return b""

    def json_blob(self, digest: object, what: str) -> dict[str, object] | None:
        data = self.need_blob(digest, what)
        if data is None:
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            self.bad(f"{what}: blob {digest} is not JSON")
            return None
        if not isinstance(obj, dict):
            self.bad(f"{what}: blob {digest} is not a JSON object")
            return None
        return obj

    # layers --------------------------------------------------------------
    def need_layer(self, diff_id: object, what: str) -> None:
        hexd = _hexpart(diff_id)
        if hexd is None:
            self.bad(f"{what}: bad diffID {diff_id!r}")
            return
        top = os.path.join(self.root, "layers", hexd)
        where = f"{what}: layer {hexd[:12]}"
        if not os.path.isdir(top):
            self.bad(f"{where} is missing")
            return
        if os.path.lexists(os.path.join(top, "incomplete")):
            self.bad(f"{where} is incomplete")
            return
        try:
            with open(os.path.join(top, "layer.json"), "rb") as f:
                info = json.load(f)
        except (OSError, ValueError) as exc:
            self.bad(f"{where} has no readable layer.json ({exc})")
            return
        if info.get("diff_id") != diff_id:
            self.bad(f"{where}: layer.json names {info.get('diff_id')}")
        diff = os.path.join(top, "diff")
        if not os.path.isdir(diff):
            self.bad(f"{where} has no diff/ directory")
            return
        count = sum(len(d) + len(f) for _, d, f in os.walk(diff))
        entries = info.get("entries", 0)
        if isinstance(entries, int) and count + 1 < entries:
            self.bad(f"{where} holds {count} files but recorded {entries} entries (partial)")
        link = info.get("link")
        if not isinstance(link, str) or not link:
            self.bad(f"{where}: layer.json has no short link")
            return
        self.need_link(link, hexd, where)

    def need_link(self, link: str, hexd: str | None, where: str) -> None:
        path = os.path.join(self.root, "layers", "l", link)
        if not os.path.islink(path):
            self.bad(f"{where}: short link l/{link} is missing")
            return
        target = os.readlink(path)
        if hexd is not None and target != os.path.join("..", hexd, "diff"):
            self.bad(f"{where}: short link l/{link} points at {target}")
        if not os.path.isdir(path):
            self.bad(f"{where}: short link l/{link} dangles")

    # images --------------------------------------------------------------
    def index(self) -> list[dict[str, object]]:
        try:
            with open(os.path.join(self.root, "index.json"), "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return []
        except ValueError as exc:
            self.bad(f"index.json does not parse: {exc}")
            return []
        items = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            self.bad("index.json has no manifests list")
            return []
        return [i for i in items if isinstance(i, dict)]

    def image(self, entry: dict[str, object]) -> None:
        annotations = entry.get("annotations")
        name = annotations.get("org.opencontainers.image.ref.name") if isinstance(annotations, dict) else None
        what = f"image {name or entry.get('digest')}"
        manifest = self.json_blob(entry.get("digest"), what)
        if manifest is None:
            return
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            self.bad(f"{what}: the manifest has no config or layers")
            return
        for layer in layers:
            if isinstance(layer, dict):
                self.need_blob(layer.get("digest"), f"{what} layer blob", layer.get("size"))
        self.config(config_desc.get("digest"), what)

    def config(self, digest: object, what: str) -> None:
        config = self.json_blob(digest, f"{what} config")
        if config is None:
            return
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            self.bad(f"{what}: the config has no rootfs.diff_ids")
            return
        for diff_id in diff_ids:
            self.need_layer(diff_id, what)

    def all_blobs_whole(self) -> None:
        d = os.path.join(self.root, "blobs", "sha256")
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if not _is_hex64(name):
                self.bad(f"blobs/sha256/{name}: not a digest (a temporary file in the wrong place?)")
            elif not self.blob_whole(name):
                self.bad(f"blobs/sha256/{name[:12]} is not whole")

    # containers ----------------------------------------------------------
    def containers(self) -> None:
        d = os.path.join(self.root, "containers")
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if not _is_hex64(name):
                continue  # .names, trash of a killed rm
            path = os.path.join(d, name, "config.json")
            what = f"container {name[:12]}"
            try:
                with open(path, "rb") as f:
                    cfg = json.load(f)
            except FileNotFoundError:
                self.bad(f"{what}: directory without config.json (half removed or half created)")
                continue
            except ValueError as exc:
                self.bad(f"{what}: config.json does not parse ({exc})")
                continue
            image_id = cfg.get("image_id")
            if not image_id:
                continue
            digest = image_id if str(image_id).startswith("sha256:") else f"sha256:{image_id}"
            self.config(digest, what)
            if cfg.get("rootfs_mode") in ("overlay", "fuse-overlayfs"):
                for link in cfg.get("lower") or []:
                    short = str(link).removeprefix("l/")
                    self.need_link(short, None, what)


def problems(root: str) -> list[str]:
    """What is inconsistent in the store at `root` (empty list: nothing)."""
    c = _Checker(root)
    for entry in c.index():
        c.image(entry)
    c.all_blobs_whole()
    c.containers()
    return c.problems


def leftovers(root: str) -> list[str]:
    """What killed commands left that nothing uses (allowed; swept later)."""
    out: list[str] = []
    tmp = os.path.join(root, "blobs", "tmp")
    out += [f"blobs/tmp/{n}" for n in (os.listdir(tmp) if os.path.isdir(tmp) else [])]
    layers = os.path.join(root, "layers")
    for name in os.listdir(layers) if os.path.isdir(layers) else []:
        top = os.path.join(layers, name)
        if _is_hex64(name) and (
            os.path.lexists(os.path.join(top, "incomplete")) or not os.path.exists(os.path.join(top, "layer.json"))
        ):
            out.append(f"layers/{name[:12]} (incomplete)")
    out += [n for n in (os.listdir(root) if os.path.isdir(root) else []) if ".tmp-" in n]
    work = os.path.join(root, "tmp")
    out += [f"tmp/{n}" for n in (os.listdir(work) if os.path.isdir(work) else []) if n.startswith("build-")]
    ctrs = os.path.join(root, "containers")
    out += [f"containers/{n}" for n in (os.listdir(ctrs) if os.path.isdir(ctrs) else []) if n.startswith(".removing-")]
    return out


def main() -> int:
    import sys

    found = problems(sys.argv[1])
    for p in found:
        print(p)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
