"""`load`, `save` and `import` end to end, as root, rltest-sub and rltest-nosub.

Cross-checks with real peers: archives written by podman (`save --format
docker-archive|oci-archive`) and skopeo (`copy oci:... docker-archive:|oci-archive:`)
load here and run; what `save` writes is read by `skopeo inspect` and loaded and
run by podman. Hand-made archives cover the docker < 25 layout (`<id>/layer.tar`,
symlinked duplicates) and docker 25+ (an OCI layout inside a docker-archive).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import TEST_TMPDIR, has_peer, require
from helpers.checks import ok, one_line_error
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, skopeo
from helpers.users import CLI

from rootless.store import Store

pytestmark = pytest.mark.needs_userns

FILE_TEXT = "archive-ok\n"


# ---------------------------------------------------------------- podman


class Podman:
    """podman with a private store (never the user's)."""

    def __init__(self, top: str) -> None:
        self.top = top
        self.base = [
            "podman", "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
            "--runtime", "runc", "--events-backend", "file",
            "--root", f"{top}/root", "--runroot", f"{top}/run",
        ]  # fmt: skip

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*self.base, *args]
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
        return proc

    def run_cat(self, image: str, path: str = "/file") -> str:
        limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        return self("run", "--rm", "--network", "none", *limits, image, "cat", path).stdout


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    require(has_peer("podman"), "needs podman")
    top = tempfile.mkdtemp(prefix="rl-podman-", dir=TEST_TMPDIR)
    p = Podman(top)
    yield p
    p("rmi", "-a", "-f", check=False)
    p("system", "reset", "-f", check=False)
    shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------- archives


@dataclass
class Archives:
    dir: str
    layout: Layout
    image_id: str
    files: dict[str, str]  # kind -> path
    names: dict[str, str]  # kind -> the name the archive carries ("" for none)
    second_id: str = ""

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)


def _readable(path: str) -> None:
    os.chmod(path, 0o755)
    for root, dirs, files in os.walk(path):
        for n in dirs:
            os.chmod(os.path.join(root, n), 0o755)
        for n in files:
            os.chmod(os.path.join(root, n), 0o644)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _legacy_docker(path: str, config: bytes, layers: list[bytes], tag: str) -> None:
    """docker < 25: <v1id>/layer.tar (+VERSION, json), a duplicate layer as a symlink."""
    with tarfile.open(path, "w") as tar:
        ids, members = [], []
        for i, layer in enumerate(layers):
            v1 = _sha(f"v1-{i}".encode() + layer[:64])
            ids.append(v1)
            _add(tar, f"{v1}/VERSION", b"1.0")
            _add(tar, f"{v1}/json", json.dumps({"id": v1}).encode())
            _add(tar, f"{v1}/layer.tar", layer)
            members.append(f"{v1}/layer.tar")
        dup = _sha(b"duplicate")
        link = tarfile.TarInfo(f"{dup}/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{members[0]}"
        tar.addfile(link)
        _add(tar, f"{_sha(config)}.json", config)
        manifest = [{"Config": f"{_sha(config)}.json", "RepoTags": [tag],
                     "Layers": [f"{dup}/layer.tar", *members[1:]]}]  # fmt: skip
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, "repositories", json.dumps({tag.split(":")[0]: {"v1": ids[-1]}}).encode())


def _docker25(path: str, layout: Layout, config: bytes, layers: list[bytes], tag: str) -> None:
    """docker 25+: an OCI layout (uncompressed layers) plus manifest.json."""
    with tarfile.open(path, "w") as tar:
        for blob in [config, *layers]:
            _add(tar, f"blobs/sha256/{_sha(blob)}", blob)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": "sha256:" + _sha(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": "sha256:" + _sha(b), "size": len(b)} for b in layers]}  # fmt: skip
        mbytes = json.dumps(manifest).encode()
        _add(tar, f"blobs/sha256/{_sha(mbytes)}", mbytes)
        index = {"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + _sha(mbytes), "size": len(mbytes),
            "annotations": {"io.containerd.image.name": f"docker.io/library/{tag}",
                            "org.opencontainers.image.ref.name": tag.split(":")[1]}}]}  # fmt: skip
        _add(tar, "index.json", json.dumps(index).encode())
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        docker = [{"Config": f"blobs/sha256/{_sha(config)}", "RepoTags": [tag],
                   "Layers": [f"blobs/sha256/{_sha(b)}" for b in layers]}]  # fmt: skip
        _add(tar, "manifest.json", json.dumps(docker).encode())


@pytest.fixture(scope="module")
def archives(busybox_rootfs: str, podman: Podman) -> Iterator[Archives]:
    require(has_peer("skopeo"), "needs skopeo")
    top = tempfile.mkdtemp(prefix="rl-archives-", dir=TEST_TMPDIR)
    layout = Layout(os.path.join(top, "layout"))
    base = gnu_tar_layer(busybox_rootfs)
    top_layer = layer_tar([TarEntry("file", data=FILE_TEXT.encode()), TarEntry("srv", "dir")])
    img = layout.image([(base, "gzip"), (top_layer, "gzip")], cmd=["/bin/sh"])
    layout.tag("demo", img.manifest)
    other = layout.image([(base, "gzip"), (layer_tar([TarEntry("file", data=b"second\n")]), "none")])
    layout.tag("second", other.manifest)
    a = Archives(top, layout, img.id, {}, {}, other.id)
    oci = f"oci:{layout.path}:demo"
    skopeo("copy", "-q", oci, f"docker-archive:{a.path('skopeo-docker.tar')}:test/skopeo-d:v1")
    skopeo("copy", "-q", oci, f"oci-archive:{a.path('skopeo-oci.tar')}:localhost/test/skopeo-o:v1")
    podman("pull", "-q", oci)
    podman("tag", img.id[7:], "localhost/test/podman:v1")
    podman("save", "-q", "--format", "docker-archive", "-o", a.path("podman-docker.tar"),
           "localhost/test/podman:v1")  # fmt: skip
    podman("save", "-q", "--format", "oci-archive", "-o", a.path("podman-oci.tar"),
           "localhost/test/podman:v1")  # fmt: skip
    config = (layout.path / "blobs" / "sha256" / img.id[7:]).read_bytes()
    _legacy_docker(a.path("docker-legacy.tar"), config, [base, top_layer], "test/legacy:v1")
    _docker25(a.path("docker25.tar"), layout, config, [base, top_layer], "test/d25:v1")
    with open(a.path("skopeo-docker.tar"), "rb") as f, gzip.open(a.path("gzipped.tar.gz"), "wb", 1) as g:
        shutil.copyfileobj(f, g)
    a.files = {k: a.path(f"{k}.tar") for k in
               ("skopeo-docker", "skopeo-oci", "podman-docker", "podman-oci", "docker-legacy", "docker25")}  # fmt: skip
    a.files["gzipped"] = a.path("gzipped.tar.gz")
    a.names = {"skopeo-docker": "test/skopeo-d:v1", "skopeo-oci": "localhost/test/skopeo-o:v1",
               "podman-docker": "localhost/test/podman:v1", "podman-oci": "localhost/test/podman:v1",
               "docker-legacy": "test/legacy:v1", "docker25": "test/d25:v1",
               "gzipped": "test/skopeo-d:v1"}  # fmt: skip
    _readable(top)
    yield a
    shutil.rmtree(top, ignore_errors=True)


def store_state(cli: CLI) -> tuple[str, list[str], list[str]]:
    """(images -q output, incomplete layers, temporary blobs)."""
    out = ok(cli.run("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
    store = Store.open(cli.store, create=False)
    incomplete = [d for d in store.layers.diff_ids() if not store.layers.has(d)]
    tmp = os.listdir(store.paths.blobs_tmp) if os.path.isdir(store.paths.blobs_tmp) else []
    return out, incomplete, tmp


# ---------------------------------------------------------------- load


@pytest.mark.parametrize(
    "kind",
    ["skopeo-docker", "skopeo-oci", "podman-docker", "podman-oci", "docker-legacy", "docker25",
     "gzipped"],
)  # fmt: skip
def test_peer_archives_load_and_run(cli: CLI, archives: Archives, kind: str) -> None:
    out = ok(cli.run("load", "-i", archives.files[kind]))
    name = archives.names[kind]
    assert out == f"Loaded image: {name}\n"
    assert ok(cli.run("run", "--rm", name, "cat", "/file")) == FILE_TEXT
    image_id = ok(cli.run("image", "inspect", "--format", "{{.Id}}", name)).strip()
    assert image_id == archives.image_id
    assert store_state(cli)[1:] == ([], [])


def test_load_from_stdin_and_reload_is_cheap(cli: CLI, archives: Archives) -> None:
    with open(archives.files["podman-oci"], "rb") as f:
        data = f.read()
    proc = cli.run("load", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Loaded image: localhost/test/podman:v1\n"
    store = Store.open(cli.store, create=False)
    stamps = {d: os.stat(store.paths.layer_json(d[7:])).st_mtime_ns for d in store.layers.diff_ids()}
    ok(cli.run("load", "-q", "-i", archives.files["podman-oci"]))
    assert {d: os.stat(store.paths.layer_json(d[7:])).st_mtime_ns for d in stamps} == stamps


# ---------------------------------------------------------------- save


def test_save_is_read_by_skopeo_and_podman(cli: CLI, archives: Archives, podman: Podman) -> None:
    ok(cli.run("load", "-i", archives.files["skopeo-oci"]))
    name = archives.names["skopeo-oci"]
    out = cli.mkdir("out")
    docker_tar, oci_tar = os.path.join(out, "d.tar"), os.path.join(out, "o.tar")
    ok(cli.run("save", "-o", docker_tar, name))
    ok(cli.run("save", "--format", "oci-archive", "-o", oci_tar, name))
    assert os.listdir(out) == sorted(os.listdir(out)) and set(os.listdir(out)) == {"d.tar", "o.tar"}
    for path in (docker_tar, oci_tar):
        transport = "docker-archive" if path == docker_tar else "oci-archive"
        info = json.loads(skopeo("inspect", f"{transport}:{path}"))
        assert len(info["Layers"]) == 2
        config = json.loads(skopeo("inspect", "--config", f"{transport}:{path}"))
        assert config["config"]["Cmd"] == ["/bin/sh"]
    # the OCI manifest is saved byte for byte: same digest as the source
    source = json.loads(skopeo("inspect", f"oci:{archives.layout.path}:demo"))
    assert json.loads(skopeo("inspect", f"oci-archive:{oci_tar}"))["Digest"] == source["Digest"]
    tag = f"localhost/test/saved-{cli.name}:v1"
    ok(cli.run("tag", name, tag))
    ok(cli.run("save", "-o", docker_tar, tag))
    assert tag in podman("load", "-i", docker_tar).stdout
    assert podman.run_cat(tag) == FILE_TEXT
    oci_tag = f"localhost/test/saved-oci-{cli.name}:v1"
    ok(cli.run("tag", name, oci_tag))
    ok(cli.run("save", "--format", "oci-archive", "-o", oci_tar, oci_tag))
    assert oci_tag in podman("load", "-i", oci_tar).stdout
    assert podman.run_cat(oci_tag) == FILE_TEXT


def test_round_trip_keeps_id_and_names_multi_image(cli: CLI, archives: Archives) -> None:
    ok(cli.run("load", "-i", archives.files["skopeo-docker"]))
    ok(cli.run("tag", "test/skopeo-d:v1", "example.com/team/app:2"))
    second = os.path.join(cli.mkdir("in"), "second.tar")
    skopeo("copy", "-q", f"oci:{archives.layout.path}:second", f"docker-archive:{second}:test/second:v1")
    os.chmod(second, 0o644)
    ok(cli.run("load", "-i", second))
    before = ok(cli.run("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
    out = cli.mkdir("out")
    for fmt in ("docker-archive", "oci-archive"):
        path = os.path.join(out, f"{fmt}.tar")
        ok(cli.run("save", "--format", fmt, "-o", path, "test/skopeo-d:v1",
                   "example.com/team/app:2", "test/second:v1"))  # fmt: skip
        ok(cli.run("rmi", "test/skopeo-d:v1", "example.com/team/app:2", "test/second:v1"))
        assert ok(cli.run("images", "-q")) == ""
        loaded = ok(cli.run("load", "-i", path))
        assert set(loaded.splitlines()) == {
            "Loaded image: test/skopeo-d:v1",
            "Loaded image: example.com/team/app:2",
            "Loaded image: test/second:v1",
        }
        after = ok(cli.run("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
        assert sorted(after.splitlines()) == sorted(before.splitlines())
    assert ok(cli.run("run", "--rm", "test/second:v1", "cat", "/file")) == "second\n"


def test_save_to_stdout_and_errors(cli: CLI, archives: Archives) -> None:
    ok(cli.run("load", "-i", archives.files["skopeo-docker"]))
    proc = cli.run("save", "test/skopeo-d:v1", input=b"")
    assert proc.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        assert "manifest.json" in tar.getnames()
    out = cli.mkdir("out")
    proc = cli.run("save", "-o", os.path.join(out, "x.tar"), "test/skopeo-d:v1", "nosuch:1")
    one_line_error(proc, "no such image")
    assert os.listdir(out) == []


# ---------------------------------------------------------------- bad input


def _corrupt(src: str, dest: str) -> None:
    """Flip bytes inside the largest member's data (a layer)."""
    with tarfile.open(src) as tar:
        big = max(tar.getmembers(), key=lambda m: m.size)
    with open(src, "rb") as f:
        data = bytearray(f.read())
    for i in range(big.offset_data + 5000, big.offset_data + 5100):
        data[i] ^= 0xFF
    with open(dest, "wb") as f:
        f.write(data)


def test_bad_archives_one_line_store_unchanged(cli: CLI, archives: Archives) -> None:
    # something in the store that shares no layer with the archives (a layer
    # that is already unpacked is not read from an archive again)
    bad = cli.mkdir("bad")
    with tarfile.open(os.path.join(bad, "tiny.tar"), "w") as tar:
        _add(tar, "tiny", b"tiny\n")
    os.chmod(os.path.join(bad, "tiny.tar"), 0o644)
    ok(cli.run("import", os.path.join(bad, "tiny.tar"), "tiny:1"))
    before = store_state(cli)
    src = archives.files["skopeo-docker"]
    cases: dict[str, tuple[str, ...]] = {}
    _corrupt(src, os.path.join(bad, "corrupt.tar"))
    cases["corrupt.tar"] = ("digest",)
    with open(src, "rb") as f:
        data = f.read()
    with open(os.path.join(bad, "truncated.tar"), "wb") as f:
        f.write(data[: len(data) // 2])
    cases["truncated.tar"] = ("truncated",)
    with open(os.path.join(bad, "truncated.tar.gz"), "wb") as f:
        f.write(gzip.compress(data)[:50000])
    cases["truncated.tar.gz"] = ("truncated",)
    with open(os.path.join(bad, "text.tar"), "w") as f:
        f.write("not an archive\n" * 100)
    cases["text.tar"] = ("tar",)
    with tarfile.open(os.path.join(bad, "plain.tar"), "w") as tar:
        _add(tar, "hello", b"hi")
    cases["plain.tar"] = ("not an image archive",)
    cases["missing.tar"] = ("missing.tar",)
    _readable(bad)
    for name, words in cases.items():
        proc = cli.run("load", "-i", os.path.join(bad, name))
        one_line_error(proc, *words)
        assert store_state(cli) == before, name


# ---------------------------------------------------------------- import


def test_import_with_changes(cli: CLI, busybox_rootfs: str) -> None:
    src = cli.mkdir("src")
    tarball = os.path.join(src, "rootfs.tar.gz")
    subprocess.run(["tar", "-C", busybox_rootfs, "-czf", tarball, "."], check=True)
    os.chmod(tarball, 0o644)
    changes = [
        "CMD echo \"$GREETING from $(pwd)\"",
        'ENV GREETING=hello OTHER="two words"',
        "WORKDIR /srv",
        "WORKDIR sub",
        "LABEL org.example.team=rootless version=1",
        "EXPOSE 8080 53/udp",
        "VOLUME /data",
        "STOPSIGNAL SIGINT",
        "USER 0:0",
    ]
    args = [a for c in changes for a in ("--change", c)]
    image_id = ok(cli.run("import", *args, "-m", "from a tarball", tarball, "imported:1")).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert ok(cli.run("run", "--rm", "imported:1")) == "hello from /srv/sub\n"
    fmt = "{{json .Config}}"
    config = json.loads(ok(cli.run("image", "inspect", "--format", fmt, "imported:1")))
    assert config["Labels"] == {"org.example.team": "rootless", "version": "1"}
    assert set(config["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert config["Volumes"] == {"/data": {}} and config["StopSignal"] == "SIGINT"
    assert "OTHER=two words" in config["Env"] and config["User"] == "0:0"
    assert "from a tarball" in ok(cli.run("history", "imported:1"))
    # from stdin, uncompressed, JSON form
    raw = subprocess.run(["tar", "-C", busybox_rootfs, "-cf", "-", "."], check=True,
                         capture_output=True).stdout  # fmt: skip
    proc = cli.run("import", "-c", 'ENTRYPOINT ["/bin/echo", "json"]', "-", "imported:2", input=raw)
    assert proc.returncode == 0, proc.stderr
    assert ok(cli.run("run", "--rm", "imported:2", "form")) == "json form\n"
    one_line_error(cli.run("import", "-c", "FROB x", tarball), "unknown instruction FROB")
    one_line_error(cli.run("import", "-c", "EXPOSE 99999", tarball), "bad port")
    one_line_error(cli.run("import", os.path.join(src, "missing.tar")), "missing.tar")
    assert len(ok(cli.run("images", "-q")).split()) == 2
