"""`rootless pull` end to end: real docker-registry, images pushed with skopeo,
unpacked trees cross-checked against umoci, as root, rltest-sub and rltest-nosub;
faults from an in-process fake registry."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Registry, has_peer, require
from helpers.users import CLI, subid_ranges
from images_fixtures import Built, build_all, merged_tree, owner_for, umoci_tree, umoci_unpack

from rootless.store import Store


@pytest.fixture(scope="module")
def built(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Built:
    require(has_peer("skopeo"), "needs skopeo")
    return build_all(str(tmp_path_factory.mktemp("images")), registry.host)


@pytest.fixture(scope="module")
def umoci_rich(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    require(has_peer("umoci"), "needs umoci")
    rootfs = umoci_unpack(built.layout, "rich", str(tmp_path_factory.mktemp("umoci") / "bundle"))
    return umoci_tree(rootfs)  # type: ignore[return-value]


def our_tree(cli: CLI, ref: str) -> dict[str, object]:
    store = Store.open(cli.store, create=False)
    image = store.image(ref)
    sub_u = subid_ranges(cli.user, "/etc/subuid") or [(0, 0)]
    sub_g = subid_ranges(cli.user, "/etc/subgid") or [(0, 0)]
    owner = owner_for(cli.name, cli.uid, sub_u[0][0], cli.gid, sub_g[0][0])
    return merged_tree(store.layer_dirs(image), owner)  # type: ignore[return-value]


def pull(cli: CLI, ref: str, *args: str) -> str:
    proc = cli.run("pull", *args, ref, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "no progress when not on a terminal"
    return str(proc.stdout)


def test_rich_image_equals_umoci_unpack(cli: CLI, built: Built, umoci_rich: dict[str, object]) -> None:
    out = pull(cli, built.ref("rich"))
    assert out.strip() == built.ref("rich")
    ours = our_tree(cli, built.ref("rich"))
    missing = sorted(set(umoci_rich) - set(ours))
    extra = sorted(set(ours) - set(umoci_rich))
    assert not missing and not extra, (missing, extra)
    diffs = {k: (ours[k], umoci_rich[k]) for k in ours if ours[k] != umoci_rich[k]}
    assert not diffs
    # spot checks of what the comparison covers
    assert ours["usr/bin/su"][1] == 0o4755  # type: ignore[index]
    assert ours["var/lib/app/more"][2] == (33, 33)  # type: ignore[index]
    assert "usr/bin/wall" not in ours and "opaque/a" not in ours and "opaque/new" in ours
    assert ours["etc/xattr"][6] == (("user.comment", b"hello world"),)  # type: ignore[index]


def test_formats_zstd_uncompressed_and_platforms(cli: CLI, built: Built) -> None:
    pull(cli, built.ref("zstd"), "-q")
    tree = our_tree(cli, built.ref("zstd"))
    assert {"bin/tool", "z"} <= set(tree)
    pull(cli, built.ref("multi"))
    store = Store.open(cli.store, create=False)
    assert store.image(built.ref("multi")).id == built.amd64.id
    pull(cli, built.ref("multi"), "--platform", "linux/arm64")
    image = store.image(built.ref("multi"))
    assert image.id == built.arm64.id
    with open(os.path.join(image.layers[0], "arch")) as f:
        assert f.read() == "arm64\n"
    assert image.repo_digests == (f"{built.host}/test/multi@sha256:" + _index_digest(built),)
    proc = cli.run("pull", "--platform", "linux/s390x", built.ref("multi"))
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1 and "no image for platform linux/s390x" in proc.stderr


def _index_digest(built: Built) -> str:
    index = json.loads((built.layout.path / "index.json").read_text())
    return next(
        m["digest"][7:] for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == "multi"
    )  # fmt: skip


def test_warm_pull_fetches_nothing(cli_factory: object, built: Built) -> None:
    """A warm pull touches no layer (its speed is measured in benchmarks/, not here)."""
    cli = cli_factory("nosub")  # type: ignore[operator]
    pull(cli, built.ref("rich"))
    store = Store.open(cli.store, create=False)
    layers = store.image(built.ref("rich")).layers
    before = [os.stat(os.path.dirname(d) + "/layer.json").st_mtime_ns for d in layers]
    for _ in range(2):
        pull(cli, built.ref("rich"))
    assert [os.stat(os.path.dirname(d) + "/layer.json").st_mtime_ns for d in layers] == before


def test_concurrent_overlapping_pulls_unpack_once(cli_factory: object, built: Built) -> None:
    cli = cli_factory("sub")  # type: ignore[operator]
    procs = [cli.popen("pull", "-q", built.ref(n), stdout=-1, stderr=-1, text=True)
             for n in ("rich", "rich", "zstd", "rich")]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = Store.open(cli.store, create=False)
    assert len(list(store.layers.diff_ids())) == 5
    assert os.listdir(store.paths.blobs_tmp) == []
    assert len(os.listdir(store.paths.layer_links)) == 5
    proc = cli.run("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(proc.stdout.split()) == sorted(f"{built.host}/test/{n}:v1" for n in ("rich", "zstd"))


def test_reference_forms_name_one_image(cli: CLI, built: Built) -> None:
    host = built.host
    pull(cli, f"{host}/test/small:v1", "-q")
    image_id = built.small.id[7:19]
    for text in (f"{host}/test/small:v1", f"{host}/test/small@{built.small.digest}", image_id, built.small.id):
        proc = cli.run("image", "inspect", "--format", "{{.Id}}", text)
        assert proc.stdout.strip() == built.small.id, (text, proc.stderr)
    proc = cli.run("pull", "-q", f"{host}/test/small@{built.small.digest}")
    assert proc.returncode == 0 and proc.stdout.strip() == f"{host}/test/small@{built.small.digest}"
    for bad in ("UPPER/case", "a//b", "x:" + "t" * 200, "sha256:abc"):
        proc = cli.run("pull", bad)
        assert proc.returncode == 125 and proc.stderr.count("\n") == 1, (bad, proc.stderr)
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- fault injection


class Fake:
    """A registry serving the test layout, with faults."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.faults: dict[str, object] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _manifest(self, tag: str) -> tuple[bytes, str]:
        index = json.loads((self.layout / "index.json").read_text())
        for m in index["manifests"]:
            if m["annotations"]["org.opencontainers.image.ref.name"] == tag or m["digest"] == tag:
                return (self.layout / "blobs/sha256" / m["digest"][7:]).read_bytes(), m["mediaType"]
        raise KeyError(tag)

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = h.path.split("/")
        if h.path == "/v2/":
            return self.reply(h, 200, b"{}", "application/json")
        if "manifests" in parts:
            if "huge_manifest" in self.faults:
                return self.reply(h, 200, b" " * (5 << 20), "application/vnd.oci.image.manifest.v1+json")
            try:
                data, media = self._manifest(parts[-1])
            except KeyError:
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                return self.reply(h, 404, body, "application/json")
            return self.reply(h, 200, data, media)
        digest = parts[-1]
        data = (self.layout / "blobs/sha256" / digest[7:]).read_bytes()
        if len(data) > 20000 and "bad_digest" in self.faults:
            data = data[:-1] + bytes([data[-1] ^ 1])
        if len(data) > 20000 and "truncate" in self.faults:
            return self.reply(h, 200, data[: len(data) // 2], "application/octet-stream", length=len(data))
        return self.reply(h, 200, data, "application/octet-stream", slow=float(self.faults.get("slow", 0)))  # type: ignore[arg-type]

    def reply(self, h: http.server.BaseHTTPRequestHandler, status: int, body: bytes, ctype: str,
              length: int | None = None, slow: float = 0) -> None:  # fmt: skip
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(length if length is not None else len(body)))
        if length is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        if h.command == "HEAD":
            return
        try:
            step = 16384
            for i in range(0, len(body), step):
                h.wfile.write(body[i : i + step])
                if slow:
                    h.wfile.flush()
                    time.sleep(slow)
            h.wfile.flush()
        except OSError:
            pass
        if length is not None:
            h.close_connection = True


@pytest.fixture
def fake(built: Built) -> Iterator[Fake]:
    server = Fake(built.layout.path)
    yield server
    server.close()


FAULT_ENV = {"ROOTLESS_REGISTRY_TIMEOUT": "2"}


@pytest.mark.parametrize(
    "fault, message",
    [
        ("bad_digest", "content has digest"),
        ("truncate", "connection ended after"),
        ("huge_manifest", "over the 4 MiB limit"),
        ("missing", "manifest unknown"),
    ],
)
def test_faults_give_one_line_and_leave_store_clean(
    cli_factory: object, fake: Fake, fault: str, message: str
) -> None:
    cli = cli_factory("nosub")  # type: ignore[operator]
    fake.faults[fault] = True
    tag = "nope" if fault == "missing" else "rich"
    proc = cli.run("pull", f"{fake.host}/test/x:{tag}", env=FAULT_ENV, timeout=90)
    assert proc.returncode == 125
    assert proc.stderr.startswith("rootless: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    _assert_clean(cli.store)


def _assert_clean(root: str) -> None:
    store = Store.open(root, create=False)
    assert store.index.entries() == []
    assert os.listdir(store.paths.blobs_tmp) == []
    for diff_id in store.layers.diff_ids():
        assert store.layers.has(diff_id), f"incomplete layer {diff_id} left visible"


def test_slow_server_times_out(cli_factory: object, fake: Fake) -> None:
    cli = cli_factory("root")  # type: ignore[operator]
    fake.faults["slow"] = 3.0
    proc = cli.run("pull", f"{fake.host}/test/x:rich", env={"ROOTLESS_REGISTRY_TIMEOUT": "1"}, timeout=90)
    assert proc.returncode == 125 and "timed out" in proc.stderr and proc.stderr.count("\n") == 1
    _assert_clean(cli.store)


def test_pull_killed_mid_download_leaves_a_usable_store(cli_factory: object, fake: Fake, built: Built) -> None:
    cli = cli_factory("sub")  # type: ignore[operator]
    fake.faults["slow"] = 0.5
    proc = cli.popen("pull", f"{fake.host}/test/x:rich", stdout=-1, stderr=-1, start_new_session=True)
    tmp = os.path.join(cli.store, "blobs", "tmp")
    deadline = time.monotonic() + 30
    big = built.rich.layer_digests[0][7:]  # ~80 kB: 2.5 s at this pace
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(tmp) and any(n.startswith(big) for n in os.listdir(tmp)):
            break
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store.open(cli.store, create=False)
    assert os.listdir(store.paths.blobs_tmp), "the pull was killed mid-download"
    fake.faults.clear()
    out = cli.run("pull", "-q", f"{fake.host}/test/x:rich", timeout=120)
    assert out.returncode == 0, out.stderr
    assert os.listdir(store.paths.blobs_tmp) == []
    assert all(store.layers.has(d) for d in store.layers.diff_ids())
    prune = cli.run("image", "prune")
    assert prune.returncode == 0
