"""Shared read-only image stores (--storage-opt additionalimagestore, $ROOTLESS_IMAGE_STORES,
storage.conf) stacked under each user's own store.

An admin (root, or a user with subordinate ids) pulls into a store of its own
(`rootless --root DIR pull`), makes its directories world-readable, and the store
is then remounted read-only (a read-only bind mount: even root cannot write it).
Users root/sub/nosub, each with an empty store of their own, run from it. Every
test checks at the end that nothing in the shared store changed (a listing of
every entry with owner, mode, size and mtime).

The image has an opaque directory and a whiteout, so that running it proves the
overlay semantics too: /opq holds only "c", /gone does not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from helpers import missing
from helpers.checks import ok, one_error_line
from helpers.images import Layout, TarEntry, layer_tar, pristine_busybox_layer, push
from helpers.users import CLI, make_cli

pytestmark = pytest.mark.needs_userns

CHECK = "cat /etc/motd; ls /opq; test ! -e /gone && echo no-gone"
EXPECTED = "layer two\nc\nno-gone\n"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def opq_image(registry, tmp_path_factory):  # type: ignore[no-untyped-def]
    """busybox, then a layer with /opq/{a,b}, /gone and /etc/motd, then a layer that
    makes /opq opaque (adding /opq/c) and whites out /gone."""
    layout = Layout(tmp_path_factory.mktemp("shared-image"))
    base = pristine_busybox_layer(tmp_path_factory.mktemp("shared-rootfs"))
    mid = layer_tar([
        TarEntry("etc/motd", data=b"layer two\n"),
        TarEntry("opq", kind="dir"),
        TarEntry("opq/a", data=b"a\n"),
        TarEntry("opq/b", data=b"b\n"),
        TarEntry("gone", data=b"x\n"),
    ])  # fmt: skip
    top = layer_tar([
        TarEntry("opq", kind="dir"),
        TarEntry("opq/.wh..wh..opq"),
        TarEntry("opq/c", data=b"c\n"),
        TarEntry(".wh.gone"),
    ])  # fmt: skip
    img = layout.image([(base, "gzip"), (mid, "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/shared-opq")
    push(layout, "latest", ref)
    return ref


def share(root: str) -> None:
    """What the admin does after pulling: make the store's own directories
    world-readable (the layers' contents keep the image's modes)."""
    subprocess.run(["find", root, "-maxdepth", "2", "-type", "d", "-exec", "chmod", "a+rx", "{}", "+"],
                   check=True)


def snapshot(root: str) -> dict[str, tuple[int, int, int, int, int]]:
    """Every entry under `root`: (mode, uid, gid, size, mtime_ns)."""
    out = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    return out


def read_only_bind(path: str) -> None:
    for argv in (["mount", "--bind", path, path], ["mount", "-o", "remount,bind,ro", path]):
        proc = subprocess.run(argv, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", path], check=False, capture_output=True)
            missing(f"cannot make a read-only bind mount: {proc.stderr.strip()}")


class Shared:
    """A shared store made by `admin`, read-only from here on."""

    def __init__(self, admin: CLI, root: str, image: str) -> None:
        self.admin = admin
        self.root = root
        self.image = image
        self.before = snapshot(root)

    def env(self) -> dict[str, str]:
        return {"ROOTLESS_IMAGE_STORES": self.root}

    def assert_unchanged(self) -> None:
        after = snapshot(self.root)
        changed = {k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k)}
        assert not changed, f"the shared store changed: {sorted(changed)[:20]}"


def _make_shared(admin_name: str, image: str, *, fs: str | None = None) -> Iterator[Shared]:
    admin = make_cli(admin_name)
    mounted: list[str] = []
    try:
        top = admin.mkdir("shared")
        if fs == "ramfs":  # like NFSv3: no xattrs at all (user.* refused with EOPNOTSUPP)
            proc = subprocess.run(["mount", "-t", "ramfs", "-o", "mode=0755", "ramfs", top],
                                  check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                missing(f"cannot mount a ramfs: {proc.stderr.strip()}")
            mounted.append(top)
            os.chown(top, admin.uid, admin.gid)
        root = os.path.join(top, "store")
        ok(admin.run("--root", root, "pull", "-q", image, timeout=180))
        share(root)
        read_only_bind(top)
        mounted.append(top)
        yield Shared(admin, root, image)
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], check=False, capture_output=True)
        admin.cleanup()


@pytest.fixture(scope="module")
def root_store(opq_image: str) -> Iterator[Shared]:
    yield from _make_shared("root", opq_image)


@pytest.fixture(scope="module")
def sub_store(opq_image: str) -> Iterator[Shared]:
    yield from _make_shared("sub", opq_image)


@pytest.fixture(scope="module")
def nosub_store(opq_image: str) -> Iterator[Shared]:
    yield from _make_shared("nosub", opq_image)


@pytest.fixture(scope="module")
def ramfs_store(opq_image: str) -> Iterator[Shared]:
    yield from _make_shared("root", opq_image, fs="ramfs")


# ---------------------------------------------------------------- tests


def test_users_run_from_a_root_created_store(cli: CLI, root_store: Shared, busybox_image: str) -> None:
    env = root_store.env()
    img = root_store.image
    rows = [json.loads(line) for line in ok(cli.run("images", "--format", "{{json .}}", env=env)).splitlines()]
    assert [(r["Repository"].rsplit("/", 1)[-1], r["ReadOnly"]) for r in rows] == [("shared-opq", True)]
    table = ok(cli.run("images", env=env)).splitlines()
    assert table[0].split()[-1] == "R/O" and table[1].split()[-1] == "true"
    assert json.loads(ok(cli.run("images", "--format", "json", env=env)))[0]["ReadOnly"] is True

    assert ok(cli.run("run", "--rm", img, "sh", "-c", CHECK, env=env)) == EXPECTED
    assert "ID" in ok(cli.run("image", "inspect", "--format", "{{.Id}} ID", img, env=env))
    assert len(ok(cli.run("history", "-q", img, env=env)).split()) >= 1

    # removal is refused, one line, 125; the image is still there
    assert "read-only" in one_error_line(cli.run("rmi", img, env=env))
    assert "read-only" in one_error_line(cli.run("image", "rm", "-f", img, env=env))

    # tag: the name goes into the user's store (with copies of manifest and config)
    ok(cli.run("tag", img, "mine/app:1", env=env))
    assert ok(cli.run("run", "--rm", "mine/app:1", "sh", "-c", CHECK, env=env)) == EXPECTED
    mine = [json.loads(line) for line in
            ok(cli.run("images", "--format", "{{json .}}", env=env)).splitlines()]
    assert ("mine/app", False) in [(r["Repository"], r["ReadOnly"]) for r in mine]
    ok(cli.run("rmi", "mine/app:1", env=env))  # the user's own name: removable
    assert ok(cli.run("run", "--rm", img, "cat", "/etc/motd", env=env)) == "layer two\n"

    # a container of it: diff, commit (into the user's store), run the result
    ok(cli.run("run", "--name", "c1", img, "sh", "-c", "echo hi > /hello", env=env))
    assert ok(cli.run("diff", "c1", env=env)).split("\n")[:1] == ["A /hello"]
    ok(cli.run("commit", "c1", "committed:1", env=env))
    assert ok(cli.run("run", "--rm", "committed:1", "sh", "-c", "cat /hello; " + CHECK, env=env)) == \
        "hi\n" + EXPECTED
    ok(cli.run("rm", "c1", env=env))

    # an image that is not in the shared store is pulled into the user's own
    ok(cli.run("run", "--rm", busybox_image, "true", env=env, timeout=120))
    with open(os.path.join(cli.store, "index.json")) as f:
        assert "ctr-busybox" in f.read()
    root_store.assert_unchanged()


@pytest.mark.parametrize("admin", ["sub", "nosub"])
def test_users_run_from_a_store_made_by_a_user(cli: CLI, admin: str, request: pytest.FixtureRequest) -> None:
    """A store made by a user with subordinate ids (files owned by the admin's
    subordinate ids) or without (the admin's uid, owners in override_stat xattrs)."""
    store: Shared = request.getfixturevalue(f"{admin}_store")
    env = store.env()
    assert ok(cli.run("run", "--rm", store.image, "sh", "-c", CHECK, env=env)) == EXPECTED
    ok(cli.run("run", "--name", "c", store.image, "sh", "-c", "echo hi > /hello", env=env))
    ok(cli.run("commit", "c", "from-user:1", env=env))
    assert ok(cli.run("run", "--rm", "from-user:1", "cat", "/hello", env=env)) == "hi\n"
    store.assert_unchanged()


def test_a_store_without_xattrs_falls_back_to_a_private_copy(cli: CLI, ramfs_store: Shared) -> None:
    """ramfs has no xattrs (like NFSv3): the admin's unpack kept the opaque marker as a
    `.wh..wh..opq` file, which kernel overlay would show as a plain file with /opq/a and
    /opq/b still visible. rootless copies the layers into the user's store (from the
    shared compressed blobs, no download) when it would use kernel overlay."""
    env = ramfs_store.env()
    assert ok(cli.run("run", "--rm", ramfs_store.image, "sh", "-c", CHECK, env=env)) == EXPECTED
    with open(os.path.join(cli.store, "storage-driver")) as f:
        driver = f.read().split()[1]
    layers = [n for n in os.listdir(os.path.join(cli.store, "layers")) if len(n) == 64]
    if driver == "overlay":
        assert len(layers) == 3, layers
        with open(os.path.join(cli.store, "shared-stores")) as f:
            assert f.read().split()[3] == "0"
    # a second run uses the copies; a container of it commits as usual
    ok(cli.run("run", "--name", "c", ramfs_store.image, "sh", "-c", "echo hi > /hello", env=env))
    assert ok(cli.run("diff", "c", env=env)).splitlines() == ["A /hello"]
    assert "ReadOnly" in ok(cli.run("images", "--format", "json", env=env))
    ramfs_store.assert_unchanged()


def test_explicit_pull_reuses_the_shared_layers(cli_factory, root_store: Shared) -> None:  # type: ignore[no-untyped-def]
    """podman's behaviour: `pull` asks the registry (the tag may have moved) and stores
    the name in the user's store, but layers found in a shared store are not fetched."""
    cli = cli_factory("sub")
    env = root_store.env()
    ok(cli.run("pull", root_store.image, env=env, timeout=120))
    # nothing unpacked or downloaded: only the manifest and the config are the user's
    assert not [n for n in os.listdir(os.path.join(cli.store, "layers")) if len(n) == 64]
    assert len(os.listdir(os.path.join(cli.store, "blobs", "sha256"))) == 2
    rows = [json.loads(line) for line in ok(cli.run("images", "--format", "{{json .}}", env=env)).splitlines()]
    assert [r["ReadOnly"] for r in rows] == [False]  # the user's name shadows the shared one
    assert ok(cli.run("run", "--rm", root_store.image, "sh", "-c", CHECK, env=env)) == EXPECTED
    root_store.assert_unchanged()


def test_push_and_build_from_a_shared_image(cli_factory, root_store: Shared, registry) -> None:  # type: ignore[no-untyped-def]
    cli = cli_factory("sub")
    env = root_store.env()
    ok(cli.run("run", "--name", "c", root_store.image, "sh", "-c", "echo pushed > /p", env=env))
    ok(cli.run("commit", "c", "pushme:1", env=env))
    dest = registry.ref("test/shared-pushed")
    ok(cli.run("push", "pushme:1", dest, env=env, timeout=120))
    other = cli_factory("nosub")
    assert ok(other.run("run", "--rm", dest, "sh", "-c", "cat /p; " + CHECK, timeout=120)) == \
        "pushed\n" + EXPECTED

    ctx = cli.mkdir("ctx")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {root_store.image}\nRUN echo built > /built\n")
    ok(cli.run("build", "-t", "built:1", ctx, env=env, timeout=180))
    assert ok(cli.run("run", "--rm", "built:1", "sh", "-c", "cat /built; " + CHECK, env=env)) == \
        "built\n" + EXPECTED
    saved = os.path.join(ctx, "s.tar")
    ok(cli.run("save", "-o", saved, root_store.image, env=env))
    import tarfile

    with tarfile.open(saved) as tar:
        assert len([n for n in tar.getnames() if n.endswith(".tar")]) == 3
    root_store.assert_unchanged()


@pytest.mark.parametrize("driver", ["vfs", "fuse-overlayfs"])
def test_other_storage_drivers(cli_factory, root_store: Shared, driver: str) -> None:  # type: ignore[no-untyped-def]
    if driver == "fuse-overlayfs":
        from helpers import fuse_status

        usable, why = fuse_status()
        if not usable:
            missing(f"needs fuse-overlayfs: {why}")
    cli = cli_factory("sub")
    env = root_store.env()
    assert ok(cli.run("--storage-driver", driver, "run", "--rm", root_store.image, "sh", "-c", CHECK,
                      env=env)) == EXPECTED
    root_store.assert_unchanged()


def test_configuration_sources(cli_factory, root_store: Shared) -> None:  # type: ignore[no-untyped-def]
    cli = cli_factory("nosub")
    config_home = cli.mkdir("config")
    os.makedirs(os.path.join(config_home, "rootless"))
    conf = os.path.join(config_home, "rootless", "storage.conf")
    with open(conf, "w") as f:
        f.write(f'# shared stores\n[storage]\nadditional_image_stores = [\n  "{root_store.root}",  # ours\n]\n')
    base = {"XDG_CONFIG_HOME": config_home}

    def listed(*args: str, env: dict[str, str]) -> bool:
        return "shared-opq" in ok(cli.run(*args, "images", env=env))

    assert listed(env=base)  # the configuration file
    assert not listed(env=base | {"ROOTLESS_IMAGE_STORES": ""})  # the variable wins, even empty
    assert listed("--storage-opt", f"additionalimagestore={root_store.root}",
                  env=base | {"ROOTLESS_IMAGE_STORES": ""})  # the option wins over both
    assert not listed("--storage-opt", "additionalimagestore=", env=base)  # empty: none
    assert ok(cli.run("run", "--rm", root_store.image, "sh", "-c", CHECK, env=base)) == EXPECTED

    assert "unknown storage option" in one_error_line(cli.run("--storage-opt", "size=1G", "images"))
    with open(conf, "w") as f:
        f.write("additional_image_stores = [\"/x\"\n")
    assert "storage.conf:" in one_error_line(cli.run("images", env=base))
    # a shared store that is not there: a warning, not an error
    proc = cli.run("images", env={"ROOTLESS_IMAGE_STORES": "/nonexistent/store"})
    assert proc.returncode == 0 and "is not an image store" in proc.stderr
    root_store.assert_unchanged()


def test_run_cache_follows_changes_of_the_shared_store(cli_factory, opq_image: str,  # type: ignore[no-untyped-def]
                                                       busybox_image: str) -> None:
    """The run cache (keyed by the user's index.json) must also notice the admin
    moving a name in the shared store."""
    admin = cli_factory("root")
    root = os.path.join(admin.mkdir("shared"), "store")
    ok(admin.run("--root", root, "pull", "-q", opq_image, timeout=120))
    ok(admin.run("--root", root, "tag", opq_image, "site/app:1"))
    share(root)
    cli = cli_factory("sub")
    env = {"ROOTLESS_IMAGE_STORES": root}
    assert ok(cli.run("run", "--rm", "site/app:1", "cat", "/etc/motd", env=env)) == "layer two\n"
    assert ok(cli.run("run", "--rm", "site/app:1", "cat", "/etc/motd", env=env)) == "layer two\n"
    ok(admin.run("--root", root, "pull", "-q", busybox_image, timeout=120))
    ok(admin.run("--root", root, "tag", busybox_image, "site/app:1"))
    share(root)
    proc = cli.run("run", "--rm", "site/app:1", "sh", "-c", "ls /opq || echo none", env=env)
    assert ok(proc).strip().endswith("none"), proc.stdout
