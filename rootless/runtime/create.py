"""Turn `run`/`create` options (plus an image's config) into a persistent container."""

from __future__ import annotations

import os

from rootless.errors import UsageError
from rootless.runtime.containers import Container, ContainerStore
from rootless.runtime.runner import RunOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.runtime.imagesource import ContainerImage


def apply_image_config(opts: RunOptions, image: ContainerImage | None, entrypoint: str | None,
                       cmd: list[str]) -> None:
    """Docker's rules: --entrypoint replaces the image's Entrypoint (and drops its Cmd);
    arguments after the image replace its Cmd; Env, WorkingDir and User are defaults."""
    if image is None:
        opts.argv = ([entrypoint] if entrypoint else []) + cmd
        return
    cfg = image.config
    ep: list[str] = [entrypoint] if entrypoint else list(cfg.entrypoint or [])
    if entrypoint == "":
        ep = []
    args = cmd if cmd else ([] if entrypoint else list(cfg.cmd or []))
    opts.argv = ep + args
    if not opts.argv:
        raise UsageError("no command specified: the image has no Cmd or Entrypoint; give one")
    opts.image_env = list(cfg.env or [])
    if opts.workdir is None and cfg.working_dir:
        opts.workdir = cfg.working_dir
    if opts.user is None and cfg.user:
        opts.user = cfg.user


def create_container(store: ContainerStore, opts: RunOptions, name: str | None,
                     image: ContainerImage | None, rootfs: str | None, driver: str = "overlay",
                     durable: bool = True) -> Container:
    from rootless.runtime import idmap

    squashfs_file = getattr(image, "squashfs", None)
    config: dict[str, object] = {
        "run": opts.to_dict(),
        "idmap_mode": idmap.plan().mode,
    }
    if image is not None:
        config.update({
            "image": image.name,
            "image_id": image.id,
            "rootfs_mode": driver,
            "layers_dir": image.layers_dir,
            "lower": image.lower,
            "image_config": image.config_json,
        })
        if image.stop_signal:
            config["stop_signal"] = image.stop_signal
        if squashfs_file is not None:  # a single-file image: runtime/squashfs.py
            from rootless.runtime import squashfs

            config.update(squashfs.container_config(image, driver))  # type: ignore[arg-type]
    else:
        assert rootfs is not None
        config.update({"image": rootfs, "image_id": "", "rootfs_mode": "rootfs",
                       "rootfs": os.path.realpath(rootfs)})
    c = store.create(name, config, durable=durable)
    if image is None:
        return c
    from rootless.runtime import lifecycle, volumes

    try:
        if squashfs_file is not None:
            from rootless.runtime import squashfs

            squashfs.populate(c, image)  # type: ignore[arg-type]
        elif driver == "vfs":
            from rootless.runtime import vfs

            vfs.populate(c.path("rootfs"), os.path.dirname(store.root_dir), image.layer_blobs)
        extra = volumes.create(c)
        if extra:
            run = c.config["run"]
            assert isinstance(run, dict)
            run["volumes"] = list(run.get("volumes", [])) + extra
            c.save_config()
    except BaseException:
        lifecycle.remove(c, force=True)
        raise
    return c
