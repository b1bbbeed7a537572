"""Anonymous volumes for the paths an image declares in its config (`VOLUME`).

Like docker, each declared path gets a fresh directory owned by the container
(<container>/volumes/<n>), filled at create time with what the image has at that
path (owners kept as the container sees them), and bound over it at every start.
A `-v` for the same destination wins. The data stays with the container and goes
away with `rm`.
"""

from __future__ import annotations

import os

from rootless import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.runtime.containers import Container


def declared(image_config: dict[str, object]) -> list[str]:
    cfg = image_config.get("config")
    vols = cfg.get("Volumes") if isinstance(cfg, dict) else None
    return sorted(str(v) for v in vols) if isinstance(vols, dict) else []


def _copy_tree(src_root: int, rel: str, dst: str) -> None:
    """Copy `rel` below src_root into dst, keeping owners where the namespace allows."""
    import stat

    from rootless.native import lib
    from rootless.overlay.copy import copy_entry

    fd = lib.rl_openat_in_root(src_root, rel.encode(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if fd < 0:
        return  # the image has nothing there: the volume starts empty
    dfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with os.scandir(fd) as it:
            entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        for name, st in entries:
            copy_entry(fd, name, st, dfd, name)
            _chown_tree(dfd, name, fd)
        top = os.fstat(fd)
        os.chmod(dfd, stat.S_IMODE(top.st_mode))
        try:
            os.chown(dfd, top.st_uid, top.st_gid)
        except OSError:
            pass
    finally:
        os.close(dfd)
        os.close(fd)


def _chown_tree(dfd: int, name: str, sfd: int) -> None:
    import stat

    st = os.lstat(name, dir_fd=sfd)
    try:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        pass  # a one-id namespace: everything stays the container's root
    if stat.S_ISDIR(st.st_mode):
        s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            for child in os.listdir(s2):
                _chown_tree(d2, child, s2)
        finally:
            os.close(s2)
            os.close(d2)


def create(c: Container) -> list[str]:
    """Make and fill the anonymous volumes of `c`; return their -v specs."""
    image_config = c.config.get("image_config")
    if not isinstance(image_config, dict) or not declared(image_config):
        return []
    from rootless.overlay.copy import in_container

    run = c.config["run"]
    assert isinstance(run, dict)
    taken = {str(v).split(":")[1] for v in run.get("volumes", []) if ":" in str(v)}
    specs: list[str] = []
    for i, path in enumerate(declared(image_config)):
        if path in taken or not path.startswith("/"):
            continue
        vdir = c.path(os.path.join("volumes", str(i)))
        os.makedirs(vdir, mode=0o755)
        try:
            rel = path.lstrip("/") or "."
            in_container(c, lambda rootfd: _copy_tree(rootfd, rel, vdir))  # called right away
        except Exception as exc:  # noqa: BLE001 - an empty volume is still a volume
            log.warning(f"volume {path}: could not copy the image's content ({exc}); it starts empty")
        specs.append(f"{vdir}:{path}")
    return specs
