"""The only place that composes store and runtime paths (imported on the hot path:
no dataclasses, no typing at run time).

Persistent store (`--root`): $ROOTLESS_ROOT, else $XDG_DATA_HOME/rootless, else
~/.local/share/rootless. Volatile state (`--runroot`): $ROOTLESS_RUNROOT, else
$XDG_RUNTIME_DIR/rootless,
else a private 0700 directory /tmp/rootless-<uid> (as in batch jobs, where
XDG_RUNTIME_DIR is unset), checked to belong to the user.
"""

from __future__ import annotations

import os
import stat
from rootless.errors import StoreError


def default_root() -> str:
    env = os.environ.get("ROOTLESS_ROOT")
    if env:
        return os.path.abspath(env)
    data = os.environ.get("XDG_DATA_HOME")
    if data:
        return os.path.join(os.path.abspath(data), "rootless")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "rootless")


def default_runroot() -> str:
    env = os.environ.get("ROOTLESS_RUNROOT")
    if env:
        return os.path.abspath(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return os.path.join(runtime, "rootless")
    path = os.path.join("/tmp", "rootless-%d" % os.getuid())
    try:
        st = os.lstat(path)
    except OSError:
        return path
    if st.st_uid == os.getuid():
        return path
    # Someone else's (e.g. we are uid 0 inside a user namespace and the host's root owns
    # it): use a name private to this user namespace instead, never their directory.
    try:
        ns = os.stat("/proc/self/ns/user").st_ino
    except OSError:
        ns = 0
    return "%s-%d" % (path, ns)


def ensure_private_dir(path: str) -> str:
    """Create `path` 0700 if missing; refuse one that another user owns or can write."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise StoreError(
            f"cannot create {path}: {exc.strerror}",
            hint="pass --root/--runroot to a directory you can write",
        ) from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise StoreError(
            f"{path} is not a directory owned by uid {os.getuid()}",
            hint="remove it, or pass --runroot to a private directory",
        )
    if st.st_mode & 0o022:
        os.chmod(path, 0o700)
    return path


class StorePaths:
    """Persistent store layout (an OCI image layout plus unpacked layers and containers)."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = root

    @property
    def blobs(self) -> str:
        return os.path.join(self.root, "blobs", "sha256")

    def blob(self, hex_digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", hex_digest)

    @property
    def layers(self) -> str:
        return os.path.join(self.root, "layers")

    @property
    def containers(self) -> str:
        return os.path.join(self.root, "containers")

    @property
    def tmp(self) -> str:
        return os.path.join(self.root, "tmp")

    # image store (rootless.store) -------------------------------------------
    @property
    def version_file(self) -> str:
        return os.path.join(self.root, "version")

    @property
    def store_lock(self) -> str:
        return os.path.join(self.root, "store.lock")

    @property
    def images_lock(self) -> str:
        return os.path.join(self.root, "images.lock")

    @property
    def oci_layout(self) -> str:
        return os.path.join(self.root, "oci-layout")

    @property
    def index_json(self) -> str:
        return os.path.join(self.root, "index.json")

    @property
    def blobs_tmp(self) -> str:
        return os.path.join(self.root, "blobs", "tmp")

    @property
    def locks(self) -> str:
        return os.path.join(self.root, "locks")

    def layer_lock(self, hex_digest: str) -> str:
        return os.path.join(self.root, "locks", "layer-" + hex_digest)

    def layer(self, hex_digest: str) -> str:
        return os.path.join(self.root, "layers", hex_digest)

    def layer_diff(self, hex_digest: str) -> str:
        return os.path.join(self.root, "layers", hex_digest, "diff")

    def layer_json(self, hex_digest: str) -> str:
        return os.path.join(self.root, "layers", hex_digest, "layer.json")

    def layer_incomplete(self, hex_digest: str) -> str:
        return os.path.join(self.root, "layers", hex_digest, "incomplete")

    @property
    def layer_links(self) -> str:
        return os.path.join(self.root, "layers", "l")

    def layer_link(self, short: str) -> str:
        return os.path.join(self.root, "layers", "l", short)

    def container_config(self, container_id: str) -> str:
        return os.path.join(self.root, "containers", container_id, "config.json")


class RunPaths:
    """Volatile per-boot state."""

    __slots__ = ("runroot",)

    def __init__(self, runroot: str) -> None:
        self.runroot = runroot

    def container(self, container_id: str) -> str:
        return os.path.join(self.runroot, "containers", container_id)
