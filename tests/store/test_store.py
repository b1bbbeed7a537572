"""The image store on a real filesystem: blobs, layers, names, resolution, gc, locks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile

import pytest
from helpers.images import TarEntry, layer_tar

from rootless.errors import DigestMismatchError, ImageError, LockTimeoutError, StoreError
from rootless.store import NoSuchImageError, Store
from rootless.store.gc import collect, prune_images, remove_image
from rootless.store.layers import UnpackResult
from rootless.store.ownership import OVERRIDE, ROOT, Ownership


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=[ROOT, OVERRIDE])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Store:
    if request.param == ROOT and os.getuid() != 0:
        pytest.skip("root ownership needs root")
    return Store.open(str(tmp_path), ownership=Ownership(request.param))


def add_layer(store: Store, tar: bytes) -> str:
    diff_id = sha(tar)
    blob = store.blobs.put(tar)
    with store.layers.lock(diff_id):
        store.layers.unpack(diff_id, [tar], lambda: UnpackResult(len(tar), blob, len(tar), "x"))
    return diff_id


def add_image(store: Store, tars: list[bytes], name: str | None, created: str = "2024-01-01T00:00:00Z") -> tuple[str, str]:
    diff_ids = [add_layer(store, t) for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cdig = store.blobs.put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(t), "size": len(t)} for t in tars],
    }).encode()
    mdig = store.blobs.put(manifest)
    store.index.add(mdig, "application/vnd.oci.image.manifest.v1+json", len(manifest), name)
    return mdig, cdig


TAR_A = layer_tar([TarEntry("etc", "dir"), TarEntry("etc/hosts", data=b"a\n", uid=7, mode=0o4755)])
TAR_B = layer_tar([TarEntry("etc", "dir"), TarEntry("etc/.wh.hosts"), TarEntry("lib", "dir", mode=0o500),
                   TarEntry("lib/x", data=b"x")])


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_new_store_is_an_oci_layout(tmp_path: object) -> None:
    s = Store.open(str(tmp_path))
    assert json.loads(read(s.paths.oci_layout)) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(read(s.paths.index_json))["manifests"] == []
    assert read(s.paths.version_file).strip() == "1"


def test_newer_store_version_is_refused(tmp_path: object) -> None:
    s = Store.open(str(tmp_path))
    with open(s.paths.version_file, "w") as f:
        f.write("99\n")
    with pytest.raises(StoreError, match="format version 99"):
        Store.open(str(tmp_path))


def test_blob_put_verify_and_abort(store: Store) -> None:
    d = store.blobs.put(b"hello")
    assert store.blobs.read(d) == b"hello" and store.blobs.has(d, 5)
    with pytest.raises(DigestMismatchError):
        store.blobs.put(b"hello", sha(b"other"))
    w = store.blobs.writer(sha(b"abc"), 3)
    w.write(b"ab")
    with pytest.raises(DigestMismatchError):
        w.commit()
    w.abort()
    assert os.listdir(store.paths.blobs_tmp) == [] and not store.blobs.has(sha(b"abc"))


def test_blob_tmp_of_dead_process_is_swept(store: Store) -> None:
    path = os.path.join(store.paths.blobs_tmp, "ab" * 32 + ".999999999.1")
    open(path, "wb").close()
    assert store.blobs.sweep_tmp() == 1 and not os.path.exists(path)


def test_corrupt_blob_is_detected(store: Store) -> None:
    d = store.blobs.put(b"content")
    with open(store.blobs.path(d), "wb") as f:
        f.write(b"tampered")
    with pytest.raises(StoreError, match="corrupt"):
        store.blobs.read(d)


def test_layer_unpack_records_and_links(store: Store) -> None:
    diff_id = add_layer(store, TAR_A)
    info = store.layers.info(diff_id)
    assert info is not None and info.ownership == store.ownership.mode and len(info.link) == 26
    link = store.paths.layer_link(info.link)
    assert os.path.realpath(link) == os.path.realpath(store.layers.diff_dir(diff_id))
    st = os.stat(os.path.join(store.layers.diff_dir(diff_id), "etc/hosts"))
    if store.ownership.mode == ROOT:
        assert st.st_uid == 7 and st.st_mode & stat.S_ISUID
    else:
        xattr = os.getxattr(os.path.join(store.layers.diff_dir(diff_id), "etc/hosts"),
                            "user.containers.override_stat")
        assert xattr.startswith(b"7:0:") and b"4755" in xattr


def test_failed_unpack_leaves_nothing(store: Store) -> None:
    diff_id = sha(TAR_A)

    def bad() -> UnpackResult:
        raise DigestMismatchError("diffID mismatch")

    with pytest.raises(DigestMismatchError):
        store.layers.unpack(diff_id, [TAR_A], bad)
    assert not os.path.exists(store.paths.layer(diff_id[7:]))
    assert os.listdir(store.paths.layer_links) == []


def test_incomplete_layer_is_swept_and_redone(store: Store) -> None:
    diff_id = add_layer(store, TAR_B)
    open(store.paths.layer_incomplete(diff_id[7:]), "wb").close()
    assert not store.layers.has(diff_id)
    assert store.layers.sweep() == 1
    assert not os.path.exists(store.paths.layer(diff_id[7:]))
    add_layer(store, TAR_B)
    assert store.layers.has(diff_id)


def test_whiteouts_become_overlay_format(store: Store) -> None:
    diff_id = add_layer(store, TAR_B)
    st = os.lstat(os.path.join(store.layers.diff_dir(diff_id), "etc/hosts"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_resolve_by_name_id_digest(store: Store) -> None:
    mdig, cdig = add_image(store, [TAR_A], "docker.io/library/busybox:latest")
    for text in ("busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:latest",
                 "index.docker.io/library/busybox:latest", cdig, cdig[7:19], cdig[7:10], mdig):
        assert store.image(text).manifest_digest == mdig, text
    with pytest.raises(NoSuchImageError):
        store.image("busybox:other")
    rec = store.image("busybox")
    assert rec.id == cdig and rec.names == ("docker.io/library/busybox:latest",)
    assert store.layer_dirs(rec) == [store.layers.diff_dir(sha(TAR_A))]
    assert store.layer_links(rec)[0].startswith("l/")


def test_ambiguous_id_prefix(store: Store) -> None:
    a = add_image(store, [TAR_A], "a:1", created="2024-01-01T00:00:00Z")[1]
    b = add_image(store, [TAR_A], "b:1", created="2024-01-02T00:00:00Z")[1]
    common = os.path.commonprefix([a[7:], b[7:]])
    if common:
        with pytest.raises(ImageError, match="ambiguous"):
            store.image(common)


def test_moving_a_tag_leaves_the_old_image_nameless(store: Store) -> None:
    old, _ = add_image(store, [TAR_A], "docker.io/library/app:1")
    new, _ = add_image(store, [TAR_A, TAR_B], "docker.io/library/app:1")
    names = {e.digest: e.name for e in store.index.entries()}
    assert names == {old: None, new: "docker.io/library/app:1"}
    events, _ = prune_images(store, all_unused=False)
    assert ("deleted", store.image(new).id) not in events
    assert [e.digest for e in store.index.entries()] == [new]


def test_rmi_untags_then_deletes_and_gc_sweeps(store: Store) -> None:
    mdig, cdig = add_image(store, [TAR_A, TAR_B], "docker.io/library/app:1")
    store.index.add(mdig, "application/vnd.oci.image.manifest.v1+json", 1, "docker.io/library/app:2")
    assert remove_image(store, "app:2") == [("Untagged", "docker.io/library/app:2")]
    with pytest.raises(StoreError, match="must be forced"):
        store.index.add(mdig, "x", 1, "docker.io/library/app:3") or remove_image(store, cdig[7:19])
    remove_image(store, "app:3")
    assert remove_image(store, "app:1") == [("Untagged", "docker.io/library/app:1"), ("Deleted", cdig)]
    with store.delete_lock():
        result = collect(store)
    assert len(result.layers) == 2 and not list(store.layers.diff_ids())
    assert list(store.blobs.digests()) == [] and os.listdir(store.paths.layer_links) == []


def test_rmi_refuses_while_a_container_uses_the_image(store: Store) -> None:
    _, cdig = add_image(store, [TAR_A], "docker.io/library/app:1")
    cdir = os.path.join(store.paths.containers, "c0ffee")
    os.makedirs(cdir)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump({"id": "c0ffee", "name": "web", "image_id": cdig}, f)
    assert store.users_of(cdig) == ["c0ffee"] and store.users_of(cdig[7:]) == ["c0ffee"]
    with pytest.raises(StoreError, match="used by container c0ffee"):
        remove_image(store, "app:1")
    assert remove_image(store, "app:1", force=True) == [("Untagged", "docker.io/library/app:1")]
    with store.delete_lock():
        collect(store)
    assert store.layers.has(sha(TAR_A)), "the container's layers must stay"
    os.unlink(os.path.join(cdir, "config.json"))
    with store.delete_lock():
        collect(store)
    assert not store.layers.has(sha(TAR_A))


def test_delete_lock_times_out_while_a_pull_holds_the_store(store: Store) -> None:
    with store.lock(shared=True), pytest.raises(LockTimeoutError, match="busy"):
        store.lock(shared=False, timeout=0.1).acquire()


def test_rmtree_handles_unreadable_directories(tmp_path: object) -> None:
    from rootless.native.job import rmtree

    top = os.path.join(str(tmp_path), "t")
    os.makedirs(os.path.join(top, "a/b/c"))
    open(os.path.join(top, "a/b/f"), "w").close()
    os.symlink("/etc", os.path.join(top, "a/link"))
    os.chmod(os.path.join(top, "a/b/c"), 0)
    os.chmod(os.path.join(top, "a/b"), 0o500)
    rmtree(top)
    assert not os.path.exists(top) and os.path.exists("/etc/hostname")


def test_untar_job_without_userns(tmp_path: object) -> None:
    from rootless.native.job import untar_in_userns

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo("f")
        info.size, info.uid = 2, 1234
        t.addfile(info, io.BytesIO(b"hi"))
    dest = os.path.join(str(tmp_path), "d")
    os.mkdir(dest)
    stats = untar_in_userns([raw.getvalue()], dest, None)
    assert stats.entries == 1 and read(os.path.join(dest, "f")) == "hi"
    if os.getuid() == 0:
        assert os.stat(os.path.join(dest, "f")).st_uid == 1234
