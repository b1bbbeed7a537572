"""What a container needs from an image: its config and its unpacked layers.

`resolve` finds the image in the store, pulling it first according to the pull
policy (missing, always, never), like `docker run --pull`.
"""

from __future__ import annotations

import os
import sys

from rootless.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from rootless.image.pull import Progress

    ProgressFactory = Callable[[], Progress | None]

CACHE_DIR = "run-cache"


class RunConfig:
    """The parts of an image config a container starts from (from the raw JSON)."""

    def __init__(self, raw: dict[str, object]) -> None:
        cfg = raw.get("config")
        c: dict[str, object] = cfg if isinstance(cfg, dict) else {}

        def strings(key: str) -> list[str] | None:
            v = c.get(key)
            return [str(x) for x in v] if isinstance(v, list) else None

        self.entrypoint = strings("Entrypoint")
        self.cmd = strings("Cmd")
        self.env = strings("Env") or []
        self.working_dir = str(c.get("WorkingDir") or "")
        self.user = str(c.get("User") or "")


class ContainerImage:
    """An image as a container sees it."""

    def __init__(self, id: str, name: str, config_json: dict[str, object],
                 layers_dir: str, lower: list[str]) -> None:
        self.id = id  # config digest hex
        self.name = name
        self.config = RunConfig(config_json)
        self.config_json = config_json
        self.layers_dir = layers_dir
        self.lower = lower  # short layer links relative to layers_dir, lowest first
        self.layer_blobs: list[tuple[str, str]] = []  # (digest, media type), lowest first
        cfg = config_json.get("config") if isinstance(config_json.get("config"), dict) else {}
        self.exposed_ports = bool(cfg.get("ExposedPorts")) if isinstance(cfg, dict) else False
        self.stop_signal = _signal_number(cfg.get("StopSignal") if isinstance(cfg, dict) else None)


def _signal_number(value: object) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    from rootless.runtime.signals import parse_signal

    try:
        return parse_signal(value)
    except Exception:  # noqa: BLE001 - a bad StopSignal falls back to SIGTERM
        return None


def _pull(store: object, ref: str, platform: str | None, tls_verify: bool | None,
          progress: ProgressFactory | None) -> None:
    from rootless.image.pull import PullOptions, pull, registry_timeout
    from rootless.runtime.plan import RecordingEnviron

    shown = progress() if progress is not None else None
    # What the pull reads of the environment (proxies, credentials) is no dependency of
    # a run plan: a planned run never pulls (the image's presence is stamped).
    RecordingEnviron.paused += 1
    try:
        pull(store, ref, PullOptions(platform=platform, tls_verify=tls_verify, progress=shown,  # type: ignore[arg-type]
                                     timeout=registry_timeout()))
    finally:
        RecordingEnviron.paused -= 1


def _stamp(root: str) -> tuple[object, ...] | None:
    """What any change of the store's index.json, or of a shared store's, changes."""
    try:
        st = os.stat(os.path.join(root, "index.json"))
    except OSError:
        return None
    from rootless.store.shared import image_stores, stamp

    return (st.st_ino, st.st_mtime_ns, st.st_size, stamp(image_stores()))


def _key(ref: str, platform: str | None) -> str:
    return f"{ref}\0{platform or ''}"


def _cache_path(root: str, ref: str, platform: str | None) -> str:
    import zlib  # builtin and cheap; the entry itself records its key against collisions

    key = _key(ref, platform).encode()
    return os.path.join(root, CACHE_DIR, "%08x%04x" % (zlib.crc32(key), len(key) & 0xFFFF))


def _cached(root: str, ref: str, platform: str | None) -> ContainerImage | None:
    """The image from the run cache, if the store's index has not changed since.

    `run` of an image that is present then imports nothing of the registry client
    or the store (their imports cost 30 ms; the cache read costs 0.1 ms). The cache
    is marshal data, written by this module only, keyed by the reference as typed
    and invalidated by any change of index.json (pull, tag, rmi, load, commit),
    the shared stores' included."""
    stamp = _stamp(root)
    data = read_cache(_cache_path(root, ref, platform))
    if data is None or data.get("stamp") != stamp or stamp is None:
        return None
    if data.get("key") != _key(ref, platform):
        return None
    lower = data["lower"]
    if not all(os.path.isdir(os.path.join(data["layers_dir"], link)) for link in lower):
        return None
    image = ContainerImage(data["id"], data["name"], data["config_json"], data["layers_dir"], lower)
    image.layer_blobs = [tuple(x) for x in data["layer_blobs"]]
    return image


def _remember(root: str, ref: str, platform: str | None, image: ContainerImage,
              stamp: tuple[object, ...] | None) -> None:
    if stamp is None:
        return
    data = {"stamp": stamp, "key": _key(ref, platform), "id": image.id, "name": image.name, "config_json": image.config_json,
            "layers_dir": image.layers_dir, "lower": list(image.lower),
            "layer_blobs": [list(x) for x in image.layer_blobs]}
    write_cache(_cache_path(root, ref, platform), data)


def read_cache(path: str) -> dict[str, Any] | None:
    """A run-cache entry (marshal data written by `write_cache`), or None."""
    import marshal

    try:
        with open(path, "rb") as f:
            data = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def write_cache(path: str, data: dict[str, Any]) -> None:
    """Write a run-cache entry atomically; a cache that cannot be written only costs speed."""
    import marshal

    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            marshal.dump(data, f)
        os.rename(tmp, path)
    except (OSError, ValueError):
        pass


def resolve(root: str, ref: str, policy: str, platform: str | None, tls_verify: bool,
            progress: ProgressFactory | None = None) -> ContainerImage:
    """The image `ref` from the store at `root`, pulled first by the pull policy
    (missing, always, never); `progress()` makes the display when a pull happens."""
    if policy != "always":
        hit = _cached(root, ref, platform)
        if hit is not None:
            return hit
    image = _resolve_from_store(root, ref, policy, platform, tls_verify, progress)
    return image


def _resolve_from_store(root: str, ref: str, policy: str, platform: str | None,
                        tls_verify: bool, progress: ProgressFactory | None) -> ContainerImage:
    from rootless.store import Store
    from rootless.store.store import NoSuchImageError

    from rootless.image.reference import Reference

    try:
        Reference.parse(ref)  # a bad reference fails before anything is printed or pulled
    except ImageError:
        if not _looks_like_id(ref):
            raise
    store = Store.open(root)
    tls = None if tls_verify else False
    if policy == "always":
        _pull(store, ref, platform, tls, progress)
    try:
        record = store.image(ref)
    except NoSuchImageError:
        if policy == "never":
            raise ImageError(f"image {ref} not found in the local store",
                             hint="pull it, or use --pull=missing") from None
        sys.stderr.write(f"Unable to find image '{ref}' locally\n")
        _pull(store, ref, platform, tls, progress)
        record = store.image(ref)
    stamp = _stamp(root)  # before reading: a concurrent change then only misses later
    if store.shared:
        from rootless.runtime.sharedstores import usable_layers

        record = usable_layers(store, record)  # a private copy where a shared one cannot serve
    lower = store.layer_links(record)
    store.layer_dirs(record)  # checks every layer is complete
    raw = dict(record.config.raw)  # parsed and sanitized (no lone surrogates) by the store
    name = record.names[0] if record.names else record.short_id
    image = ContainerImage(record.id.split(":", 1)[-1], _familiar(name), raw, store.paths.layers, lower)
    image.layer_blobs = [(d.digest, d.media_type) for d in record.manifest.layers]
    _remember(root, ref, platform, image, stamp)
    return image


def _familiar(name: str) -> str:
    from rootless.image.reference import Reference

    try:
        return Reference.parse(name).familiar()
    except Exception:  # noqa: BLE001 - show what we have
        return name


def _looks_like_id(text: str) -> bool:
    hex_part = text.split(":", 1)[-1]
    return 4 <= len(hex_part) <= 64 and all(c in "0123456789abcdef" for c in hex_part)
