"""`rootless push` end to end against the real docker-registry, as root,
rltest-sub and rltest-nosub. What the client sent is read from its own request
trace (`--log-level debug`: `http METHOD PATH -> STATUS`); what the registry has
is read back with skopeo (inspect, copy) and podman (pull, run)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator

import pytest
from helpers import TEST_TMPDIR, Registry, has_peer, require
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push, skopeo
from helpers.users import CLI
from test_archives import Podman, ok, one_line_error

pytestmark = pytest.mark.needs_userns

FILE_TEXT = "pushed-ok\n"
TRACE = re.compile(r"^rootless: debug: http (\S+) (\S+) -> (\d+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    require(has_peer("podman"), "needs podman")
    top = tempfile.mkdtemp(prefix="rl-podman-push-", dir=TEST_TMPDIR)
    p = Podman(top)
    yield p
    p("rmi", "-a", "-f", check=False)
    p("system", "reset", "-f", check=False)
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def source(registry: Registry, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-layer busybox image in the registry (pushed by skopeo); its reference."""
    require(has_peer("skopeo"), "needs skopeo")
    layout = Layout(tmp_path_factory.mktemp("push-src"))
    base = gnu_tar_layer(busybox_rootfs)
    top = layer_tar([TarEntry("file", data=FILE_TEXT.encode())])
    img = layout.image([(base, "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("v1", img.manifest)
    ref = registry.ref("test/push-src", "v1")
    push(layout, "v1", ref)
    return ref


def requests(stderr: str) -> list[tuple[str, str, int]]:
    return [(m, p, int(s)) for m, p, s in TRACE.findall(stderr)]


def pushed(cli: CLI, *args: str, env: dict[str, str] | None = None) -> tuple[str, list[tuple[str, str, int]]]:
    proc = cli.run("--log-level", "debug", "push", *args, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, requests(proc.stderr)


def remote_digest(ref: str, *extra: str) -> str:
    return str(json.loads(skopeo("inspect", "--tls-verify=false", *extra, f"docker://{ref}"))["Digest"])


def blob_uploads(reqs: list[tuple[str, str, int]]) -> list[str]:
    return [p for m, p, s in reqs if m == "PUT" and "/blobs/uploads/" in p]


def test_pulled_image_pushed_to_another_repo_reuses_blobs(cli: CLI, registry: Registry, source: str) -> None:
    ok(cli.run("pull", "-q", source))
    dest = registry.ref(f"test/push-copy-{cli.name}", "v2")
    out, reqs = pushed(cli, source, dest)
    digest = remote_digest(source)
    assert out == f"v2: digest: {digest} size: {_manifest_size(source)}\n"
    mounts = [p for m, p, s in reqs if m == "POST" and "mount=" in p and s == 201]
    assert len(mounts) == 3, reqs  # two layers and the config, mounted from test/push-src
    assert blob_uploads(reqs) == [], "nothing uploaded"
    assert remote_digest(dest) == digest  # the manifest bytes are unchanged
    # the second time every blob exists: HEADs and the manifest, no upload session
    _, again = pushed(cli, source, dest)
    assert [m for m, _, _ in again if m == "POST"] == []
    assert sum(1 for m, _, s in again if m == "HEAD" and s == 200) == 3
    # `push NAME` pushes to the registry in the name
    ok(cli.run("tag", source, dest.replace(":v2", ":v3")))
    out, _ = pushed(cli, dest.replace(":v2", ":v3"))
    assert out.startswith("v3: digest: " + digest)


def _manifest_size(ref: str) -> int:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    return len(raw.encode())


def _import_image(cli: CLI, rootfs: str | None, name: str) -> None:
    src = cli.mkdir(f"src-{name.replace('/', '-').replace(':', '-')}")
    tarball = os.path.join(src, "rootfs.tar")
    with tarfile.open(tarball, "w") as tar:
        if rootfs:
            tar.add(rootfs, arcname=".")
        data = FILE_TEXT.encode()
        info = tarfile.TarInfo("file")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    os.chmod(tarball, 0o644)
    ok(cli.run("import", "-c", 'CMD ["cat", "/file"]', tarball, name))


def test_chunked_push_read_by_skopeo_and_podman(
    cli: CLI, registry: Registry, busybox_rootfs: str, podman: Podman
) -> None:
    _import_image(cli, busybox_rootfs, "local/pushme:1")
    dest = registry.ref(f"test/chunked-{cli.name}", "v1")
    out, reqs = pushed(cli, "local/pushme:1", dest, env={"ROOTLESS_PUSH_CHUNK_SIZE": "65536"})
    patches = [p for m, p, s in reqs if m == "PATCH" and s == 202]
    assert len(patches) >= 10, "the layer went up in 64 KiB chunks"
    assert len(blob_uploads(reqs)) == 2  # layer + config: the closing PUT of each session
    digest = out.split()[2]
    assert remote_digest(dest) == digest
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{dest}"))
    assert config["config"]["Cmd"] == ["cat", "/file"]
    copy_dir = cli.mkdir("copy")
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{copy_dir}:x")
    assert os.path.exists(os.path.join(copy_dir, "index.json"))
    podman("pull", "-q", "--tls-verify=false", dest)
    assert podman.run_cat(dest) == FILE_TEXT


def test_push_with_login_and_denied(cli: CLI, registry_auth: Registry) -> None:
    _import_image(cli, None, "local/tiny:1")
    dest = f"{registry_auth.host}/private/push-{cli.name}:v1"
    env = {"XDG_RUNTIME_DIR": cli.mkdir("authrun")}
    proc = cli.run("push", "--tls-verify=false", "local/tiny:1", dest, env=env)
    one_line_error(proc, "authentication required")
    proc = cli.run("login", "--tls-verify=false", "-u", str(registry_auth.username), "--password-stdin",
                   registry_auth.host, input=f"{registry_auth.password}\n", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out, _ = pushed(cli, "--tls-verify=false", "local/tiny:1", dest, env=env)
    creds = f"--creds={registry_auth.username}:{registry_auth.password}"
    assert remote_digest(dest, creds) == out.split()[2]
    ok(cli.run("logout", registry_auth.host, env=env))
    proc = cli.run("push", "--tls-verify=false", "local/tiny:1", dest, env=env)
    one_line_error(proc, "authentication required")


def test_push_usage_errors(cli: CLI, registry: Registry) -> None:
    _import_image(cli, None, "local/err:1")
    image_id = ok(cli.run("image", "inspect", "--format", "{{.Id}}", "local/err:1")).strip()
    one_line_error(cli.run("push", image_id[7:19]), "destination")
    one_line_error(cli.run("push", "local/nosuch:1"), "no such image")
    dest = registry.ref("test/x") + "@sha256:" + "0" * 64
    proc = cli.run("push", "local/err:1", dest.replace(":latest@", "@"))
    one_line_error(proc, "digest")
    # a missing compressed blob: one clear line, nothing sent
    store_blobs = os.path.join(cli.store, "blobs", "sha256")
    layer = _layer_blob(cli, "local/err:1")
    os.rename(os.path.join(store_blobs, layer), os.path.join(store_blobs, layer + ".away"))
    try:
        proc = cli.run("push", "local/err:1", registry.ref(f"test/missing-{cli.name}"))
        one_line_error(proc, "missing from the store")
    finally:
        os.rename(os.path.join(store_blobs, layer + ".away"), os.path.join(store_blobs, layer))


def _layer_blob(cli: CLI, name: str) -> str:
    from rootless.store import Store

    store = Store.open(cli.store, create=False)
    return store.image(name).manifest.layers[0].digest[7:]

