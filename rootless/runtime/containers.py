"""Containers as persistent objects in the store.

    <root>/containers/<id>/config.json   what to run (written once at create; name may change)
    <root>/containers/<id>/upper/ work/  the overlay's writable layer
    <root>/containers/<id>/rootfs/       the private copy (vfs driver)
    <root>/containers/<id>/exit          last exit status (survives reboots)
    <root>/containers/<id>/lock          per-container lock for lifecycle changes
    <root>/containers/.names/<name>      name reservations (O_EXCL: unique without a scan)
    <runroot>/containers/<id>/state.json pid + start time, monitor pid (volatile)
    <runroot>/containers/<id>/exit       exit status written by the monitor
    <runroot>/containers/<id>/attach.sock, ctr.log
"""

from __future__ import annotations

import fcntl
import os
import time

from rootless.errors import ContainerError, UsageError
from rootless.runtime import names, state


class NoSuchContainer(ContainerError):
    pass


class Container:
    """One container: its immutable config plus where its files are."""

    def __init__(self, store: ContainerStore, cid: str, config: dict[str, object]) -> None:
        self.store = store
        self.id = cid
        self.config = config

    @property
    def name(self) -> str:
        return str(self.config["name"])

    @property
    def dir(self) -> str:
        return os.path.join(self.store.root_dir, self.id)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.store.run_dir, self.id)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def run_path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    @property
    def log_path(self) -> str:
        return self.path("ctr.log")

    def status(self) -> state.Status:
        return state.compute(self.run_path("state.json"), [self.run_path("exit"), self.path("exit")])

    def save_config(self, sync: bool = True) -> None:
        state.atomic_write_json(self.path("config.json"), self.config, sync=sync)

    def lock(self, timeout: float = 30.0) -> Lock:
        return Lock(self.path("lock"), timeout, self.name)


class Lock:
    """An exclusive flock held for a with-block."""

    def __init__(self, path: str, timeout: float, name: str = "") -> None:
        self.path = path
        self.timeout = timeout
        self.name = name
        self.fd = -1

    def __enter__(self) -> Lock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # removed by another command meanwhile
            raise NoSuchContainer(f"no such container: {self.name or self.path}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise ContainerError(f"timed out waiting for the lock {self.path}",
                                         hint="another rootless command is working on this container") from None
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class ContainerStore:
    """All containers of one store/runroot pair."""

    def __init__(self, root: str, runroot: str) -> None:
        self.root_dir = os.path.join(root, "containers")
        self.run_dir = os.path.join(runroot, "containers")
        try:
            owner = os.stat(runroot).st_uid
        except OSError:
            owner = os.getuid()  # made (private) when first needed
        if owner != os.getuid():
            raise ContainerError(f"cannot use the runroot {runroot}: permission denied (it belongs to uid {owner})",
                                 hint="every user has their own: leave out --runroot, or pass a directory you own")

    def ids(self) -> list[str]:
        try:
            entries = os.listdir(self.root_dir)
        except FileNotFoundError:
            return []
        except PermissionError:
            raise ContainerError(f"cannot read {self.root_dir}: permission denied",
                                 hint="it is another user's store; use your own --root") from None
        return [e for e in entries if len(e) == 64 and os.path.exists(os.path.join(self.root_dir, e, "config.json"))]

    def load(self, cid: str) -> Container | None:
        cfg = state.read_json(os.path.join(self.root_dir, cid, "config.json"))
        return Container(self, cid, cfg) if cfg is not None else None

    def all(self) -> list[Container]:
        out = [c for c in (self.load(i) for i in self.ids()) if c is not None]
        out.sort(key=lambda c: float(c.config.get("created", 0)), reverse=True)  # type: ignore[arg-type]
        return out

    def get(self, ref: str) -> Container:
        """By full id, unique id prefix, or name (like docker)."""
        containers = self.all()
        for c in containers:
            if c.id == ref or c.name == ref or c.name == ref.lstrip("/"):
                return c
        matches = [c for c in containers if len(ref) >= 1 and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"multiple containers match {ref!r}: use more of the id")
        raise NoSuchContainer(f"no such container: {ref}")

    def _names_dir(self) -> str:
        return os.path.join(self.root_dir, ".names")

    def reserve_name(self, name: str, cid: str) -> bool:
        """Claim `name` for `cid` atomically; False if another live container has it."""
        path = os.path.join(self._names_dir(), name)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                try:
                    with open(path, encoding="ascii") as f:
                        owner = f.read().strip()
                except OSError:
                    owner = ""
                if owner and os.path.exists(os.path.join(self.root_dir, owner, "config.json")):
                    return False
                try:  # a stale reservation (its container is gone): take it over
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(cid)
            return True
        return False

    def release_name(self, name: str, cid: str) -> None:
        path = os.path.join(self._names_dir(), name)
        try:
            with open(path, encoding="ascii") as f:
                if f.read().strip() != cid:
                    return
            os.unlink(path)
        except OSError:
            pass

    def owner_of(self, name: str) -> str | None:
        try:
            with open(os.path.join(self._names_dir(), name), encoding="ascii") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def create(self, name: str | None, config: dict[str, object], durable: bool = True) -> Container:
        os.makedirs(self._names_dir(), mode=0o700, exist_ok=True)
        cid = os.urandom(32).hex()
        if name is not None:
            if not names.valid(name):
                raise UsageError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
            if not self.reserve_name(name, cid):
                other = self.owner_of(name) or "?"
                raise ContainerError(
                    f'the container name "{name}" is already in use by container {other[:12]}',
                    hint="remove or rename that container, or choose another name")
        else:
            for _ in range(50):
                name = names.generate(set())
                if self.reserve_name(name, cid):
                    break
            else:
                raise ContainerError("could not find a free container name", hint="pass --name")
        config = dict(config, id=cid, name=name, created=time.time())
        d = os.path.join(self.root_dir, cid)
        try:
            os.mkdir(d, 0o700)
            c = Container(self, cid, config)
            c.save_config(sync=durable)
        except BaseException:
            self.release_name(name, cid)
            raise
        return c

    def ensure_run_dir(self, c: Container) -> str:
        from rootless.paths import ensure_private_dir

        ensure_private_dir(os.path.dirname(self.run_dir))
        os.makedirs(c.run_dir, mode=0o700, exist_ok=True)
        return c.run_dir

    def users_of_image(self, image_id: str) -> list[Container]:
        return [c for c in self.all() if c.config.get("image_id") == image_id]

    def trash_path(self, cid: str) -> str:
        """Where `rm` moves a container before deleting its files (one rename takes
        it out of `ps` whole, however the delete ends): named with the remover's pid."""
        return os.path.join(self.root_dir, f"{TRASH_PREFIX}{cid}-{os.getpid()}")

    def claim_stale_trash(self) -> list[str]:
        """Trash directories whose `rm` died, each renamed to this process's
        name first (of several commands finishing them, one gets each)."""
        try:
            entries = os.listdir(self.root_dir)
        except OSError:
            return []
        claimed = []
        for e in entries:
            cid, _, pid = e[len(TRASH_PREFIX):].rpartition("-")
            if not e.startswith(TRASH_PREFIX) or not pid.isdigit():
                continue
            from rootless.store.blobs import pid_alive  # only when there is trash

            if pid_alive(int(pid)):
                continue
            mine = self.trash_path(cid)
            try:
                os.rename(os.path.join(self.root_dir, e), mine)
            except OSError:
                continue
            claimed.append(mine)
        return claimed



TRASH_PREFIX = ".removing-"


class ImageUse:
    """The image store's lock (`<root>/store.lock`), shared, from resolving a
    container's image until its config.json names the image: the sweep of
    `rmi`/`image prune` holds it exclusively, so it never deletes the layers of
    a container being created, and rmi sees the container. Plain fcntl: the
    `run` hot path does not import the store."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = -1

    def __enter__(self) -> ImageUse:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            if os.stat(self.root).st_uid != os.getuid():
                return self  # not our store: opening it fails with a clear error later
            self.fd = os.open(os.path.join(self.root, "store.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return self
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
