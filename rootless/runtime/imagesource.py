"""What a container needs from an image: its config and its unpacked layers.

`resolve` finds the image in the store, pulling it first according to the pull
policy (missing, always, never), like `docker run --pull`.
"""

from __future__ import annotations

import json
import sys

from rootless.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.cli.main import Context
    from rootless.image.types import ImageConfig


class ContainerImage:
    """An image as a container sees it."""

    def __init__(self, id: str, name: str, config: ImageConfig, config_json: dict[str, object],
                 layers_dir: str, lower: list[str]) -> None:
        self.id = id  # config digest hex
        self.name = name
        self.config = config
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
    from rootless.cli.commands.kill import parse_signal

    try:
        return parse_signal(value)
    except Exception:  # noqa: BLE001 - a bad StopSignal falls back to SIGTERM
        return None


def _pull(store: object, ref: str, platform: str | None, tls_verify: bool | None) -> None:
    from rootless.cli.commands.pull import _progress, _timeout
    from rootless.image.pull import PullOptions, pull

    options = PullOptions(platform=platform, tls_verify=tls_verify, progress=_progress(False),
                          timeout=_timeout())
    sys.stderr.write(f"Unable to find image '{ref}' locally\n")
    pull(store, ref, options)  # type: ignore[arg-type]


def resolve(ctx: Context, ref: str, policy: str, platform: str | None, tls_verify: bool) -> ContainerImage:
    from rootless.store import Store
    from rootless.store.store import NoSuchImageError

    from rootless.image.reference import Reference

    try:
        Reference.parse(ref)  # a bad reference fails before anything is printed or pulled
    except ImageError:
        if not _looks_like_id(ref):
            raise
    store = Store.open(ctx.root)
    tls = None if tls_verify else False
    if policy == "always":
        from rootless.cli.commands.pull import _progress, _timeout
        from rootless.image.pull import PullOptions, pull

        pull(store, ref, PullOptions(platform=platform, tls_verify=tls, progress=_progress(False),
                                     timeout=_timeout()))
    try:
        record = store.image(ref)
    except NoSuchImageError:
        if policy == "never":
            raise ImageError(f"image {ref} not found in the local store",
                             hint="pull it, or use --pull=missing") from None
        _pull(store, ref, platform, tls)
        record = store.image(ref)
    lower = store.layer_links(record)
    store.layer_dirs(record)  # checks every layer is complete
    raw = json.loads(store.blobs.read(record.config_digest))
    name = record.names[0] if record.names else record.short_id
    image = ContainerImage(record.id.split(":", 1)[-1], _familiar(name), record.config, raw,
                           store.paths.layers, lower)
    image.layer_blobs = [(d.digest, d.media_type) for d in record.manifest.layers]
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
