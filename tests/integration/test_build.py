"""`rootless build` end to end, as root, rltest-sub and rltest-nosub.

Real Dockerfiles over a busybox image (and Debian for apt) served by the test
registry; the results are run, pushed with `rootless push`, read back with
skopeo (inspect, copy) and run with podman; cache hits and misses, multi-stage
targets, .dockerignore, ownership after a push/pull round trip, and the
one-line errors.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator

import pytest
from helpers import TEST_TMPDIR, Registry, has_peer
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push, skopeo
from helpers.users import CLI
from test_archives import Podman, ok, one_line_error

pytestmark = [pytest.mark.needs_userns, pytest.mark.needs_overlay, pytest.mark.timeout(600)]

URL_DATA = b"downloaded over http\n"


@pytest.fixture(scope="module")
def base(registry: Registry, busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image in the registry (passwd has user 1000 "user"); its reference."""
    layout = Layout(tmp_path_factory.mktemp("build-base"))
    base_layer = gnu_tar_layer(busybox_rootfs)
    extra = layer_tar([
        TarEntry("etc/group", data=b"root:x:0:\nstaff:x:50:\nuser:x:1000:\n"),
        TarEntry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
    ])
    img = layout.image([(base_layer, "gzip"), (extra, "gzip")], cmd=["/bin/sh"])
    layout.tag("v1", img.manifest)
    ref = registry.ref("test/build-base", "v1")
    push(layout, "v1", ref)
    return ref


@pytest.fixture(scope="module")
def http_file() -> Iterator[str]:
    """A URL on 127.0.0.1 serving URL_DATA (for ADD <url>)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(URL_DATA)))
            self.send_header("Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT")
            self.end_headers()
            self.wfile.write(URL_DATA)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/files/remote.txt"
    server.shutdown()


def context(cli: CLI, files: dict[str, str | bytes], name: str = "ctx") -> str:
    """A build context owned by the test user."""
    root = cli.mkdir(name)
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), cli.uid, cli.gid)
    return root


def build(cli: CLI, ctx: str, *args: str, timeout: float = 300) -> str:
    return ok(cli.run("build", *args, ctx, timeout=timeout))


def app_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, uid in (("app/bin/tool", b"#!/bin/sh\necho tool-ok\n", 0), ("app/data.txt", b"data\n", 33)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), 0o755, uid, uid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


EVERYTHING = """\
# syntax=docker/dockerfile:1
ARG BASE
ARG TAG=v1
FROM ${BASE}:${TAG} AS builder
ARG MESSAGE=built-in-stage-one
RUN mkdir -p /out && echo "$MESSAGE" > /out/message
RUN ["/bin/sh", "-c", "echo exec-form > /out/exec"]
RUN <<EOF
echo heredoc-script > /out/heredoc
EOF

FROM ${BASE}:${TAG}
ARG VERSION=0
ARG HTTP_PROXY
ENV APP_HOME=/srv/app \\
    GREETING="hello  world"
LABEL org.example.version="${VERSION}" org.example.name=everything
EXPOSE 8080 53/udp
VOLUME ["/data"]
WORKDIR ${APP_HOME}
COPY conf/*.conf ./conf/
COPY --chown=user:staff --chmod=640 secret.txt /etc/app/secret.txt
COPY --chown=1000 dir/ /home/user/dir/
COPY --from=builder /out/ /from-builder/
ADD app.tar.gz /opt/
ADD --checksum=sha256:{url_sum} {url} /downloads/
COPY <<EOF /etc/app/generated.conf
version=${VERSION}
EOF
RUN echo "proxy=${HTTP_PROXY:-none} version=${VERSION:+set}" > /srv/app/run.txt && chown 1000:50 /srv/app/run.txt
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "shell-form via SHELL" > /srv/app/shell.txt
USER 1000:1000
RUN id -u > /tmp/whoami
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=3 CMD ["cat", "/srv/app/run.txt"]
ONBUILD RUN echo triggered > /onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/run.txt"]
"""


def everything_context(cli: CLI, url: str) -> str:
    df = EVERYTHING.replace("{url_sum}", hashlib.sha256(URL_DATA).hexdigest()).replace("{url}", url)
    return context(cli, {
        "Dockerfile": df,
        "conf/a.conf": "a=1\n",
        "conf/b.conf": "b=2\n",
        "conf/skip.txt": "not a conf\n",
        "secret.txt": "s3cret\n",
        "dir/file": "in dir\n",
        "dir/sub/deeper": "deeper\n",
        "app.tar.gz": app_tar(),
    })


def run_sh(cli: CLI, image: str, script: str) -> str:
    return ok(cli.run("run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", image, "-c", script, timeout=60))


OWNERS = ("stat -c '%n %u:%g %a' /etc/app/secret.txt /home/user/dir /home/user/dir/sub/deeper "
          "/srv/app/run.txt /opt/app/data.txt /downloads/remote.txt /srv/app/conf/a.conf")
EXPECTED_OWNERS = [
    "/etc/app/secret.txt 1000:50 640",
    "/home/user/dir 1000:1000 755",
    "/home/user/dir/sub/deeper 1000:1000 644",
    "/opt/app/data.txt 33:33 755",
    "/downloads/remote.txt 0:0 600",
    "/srv/app/conf/a.conf 0:0 644",
]


def test_every_instruction(cli: CLI, base: str, http_file: str, registry: Registry) -> None:
    base_repo = base.rsplit(":", 1)[0]
    ctx = everything_context(cli, http_file)
    out = build(cli, ctx, "-t", "everything:1", "--build-arg", f"BASE={base_repo}", "--build-arg", "VERSION=7",
                "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128", "--label", "extra=yes")
    assert re.search(r"^Step 1/\d+ : FROM \$\{BASE\}:\$\{TAG\} AS builder$", out, re.MULTILINE), out
    assert " ---> Running in " in out
    assert re.search(r"^Successfully built [0-9a-f]{12}$", out, re.MULTILINE)
    assert "Successfully tagged everything:1" in out
    # the config
    cfg = json.loads(ok(cli.run("image", "inspect", "everything:1")))[0]["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /srv/app/run.txt"]
    assert "GREETING=hello  world" in cfg["Env"] and "APP_HOME=/srv/app" in cfg["Env"]
    assert not any(e.startswith(("VERSION=", "HTTP_PROXY=")) for e in cfg["Env"])
    assert cfg["Labels"] == {"org.example.version": "7", "org.example.name": "everything", "extra": "yes"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert set(cfg["Volumes"]) == {"/data"}
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "1000:1000"
    assert cfg["StopSignal"] == "SIGINT" and cfg["Shell"] == ["/bin/sh", "-e", "-c"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "cat", "/srv/app/run.txt"]
    assert cfg["Healthcheck"]["Interval"] == 30 * 10**9 and cfg["Healthcheck"]["Retries"] == 3
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild.txt"]
    # it runs, with what the build made
    assert ok(cli.run("run", "--rm", "everything:1", timeout=60)) == "proxy=http://proxy.invalid:3128 version=set\n"
    files = run_sh(cli, "everything:1", "cat /from-builder/message /from-builder/exec /from-builder/heredoc "
                   "/etc/app/generated.conf /downloads/remote.txt /srv/app/shell.txt /tmp/whoami; "
                   "/opt/app/bin/tool; ls /srv/app/conf; pwd; id -u")
    assert files.splitlines() == [
        "built-in-stage-one", "exec-form", "heredoc-script", "version=7", URL_DATA.decode().strip(),
        "shell-form via SHELL", "1000", "tool-ok", "a.conf", "b.conf", "/srv/app", "0",
    ]
    owners = run_sh(cli, "everything:1", OWNERS).splitlines()
    if cli.has_subids:  # a single-id container shows every file as its root's
        for line in EXPECTED_OWNERS:
            assert line in owners, owners
    if cli.has_subids:  # chown in RUN is real with subordinate ids
        assert "/srv/app/run.txt 1000:50 644" in owners, owners
    history = json.loads(ok(cli.run("image", "inspect", "everything:1")))[0]
    assert len(history["RootFS"]["Layers"]) == 2 + 11  # WORKDIR, 7 COPY/ADD, 3 RUN
    # push with rootless push, read back with skopeo, round trip through pull
    dest = registry.ref(f"test/build-everything-{cli.name}", "v1")
    ok(cli.run("push", "everything:1", dest, timeout=180))
    remote = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{dest}"))
    assert remote["config"]["Labels"]["org.example.version"] == "7"
    copy_dir = tempfile.mkdtemp(prefix="rl-build-copy-", dir=TEST_TMPDIR)
    try:
        skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{copy_dir}:x")
        owners_in_layers = _layer_owners(copy_dir)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)
    for line in EXPECTED_OWNERS:  # recorded in the layers, whoever built them
        path, owner, mode = line.split()
        uid, gid = owner.split(":")
        assert owners_in_layers[path.lstrip("/")] == (int(uid), int(gid), int(mode, 8)), path
    assert owners_in_layers["srv/app/run.txt"][:2] == (1000, 50)  # chown in RUN, for every user
    ok(cli.run("rmi", "everything:1"))
    ok(cli.run("pull", "-q", dest, timeout=120))
    assert run_sh(cli, dest, OWNERS).splitlines() == owners


def _layer_owners(layout: str) -> dict[str, tuple[int, int, int]]:
    with open(os.path.join(layout, "index.json")) as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    blob = os.path.join(layout, "blobs", "sha256")
    with open(os.path.join(blob, manifest_digest.split(":")[1])) as f:
        manifest = json.load(f)
    owners: dict[str, tuple[int, int, int]] = {}
    for layer in manifest["layers"]:
        with tarfile.open(os.path.join(blob, layer["digest"].split(":")[1]), "r:*") as tar:
            for m in tar:
                owners[m.name.rstrip("/")] = (m.uid, m.gid, m.mode)
    return owners


def test_onbuild_triggers_and_podman(cli: CLI, base: str, registry: Registry, tmp_path_factory) -> None:
    base_repo = base.rsplit(":", 1)[0]
    parent = context(cli, {"Dockerfile": f"FROM {base}\nONBUILD RUN echo triggered > /onbuild.txt\n"
                                         "ONBUILD COPY hello.txt /hello.txt\n"}, "parent")
    build(cli, parent, "-t", "parent:1")
    child = context(cli, {"Dockerfile": "FROM parent:1\nCMD [\"cat\", \"/onbuild.txt\", \"/hello.txt\"]\n",
                          "hello.txt": "hello from the child context\n"}, "child")
    out = build(cli, child, "-t", "child:1")
    assert "# Executing 2 build triggers" in out
    assert ok(cli.run("run", "--rm", "child:1", timeout=60)) == "triggered\nhello from the child context\n"
    cfg = json.loads(ok(cli.run("image", "inspect", "child:1")))[0]["Config"]
    assert not cfg.get("OnBuild")
    if not has_peer("podman") or not cli.ident.is_root:
        return
    dest = registry.ref("test/build-child", "v1")
    ok(cli.run("push", "child:1", dest, timeout=120))
    top = tempfile.mkdtemp(prefix="rl-podman-build-", dir=TEST_TMPDIR)
    podman = Podman(top)
    try:
        podman("pull", "-q", "--tls-verify=false", dest)
        assert podman.run_cat(dest, "/hello.txt") == "hello from the child context\n"
    finally:
        podman("rmi", "-a", "-f", check=False)
        podman("system", "reset", "-f", check=False)
        shutil.rmtree(top, ignore_errors=True)
    del base_repo


CACHE_DF = """\
FROM {base}
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a
COPY b.txt /b.txt
CMD ["cat", "/a.txt", "/b.txt"]
"""


def test_cache_hits_and_misses(cli: CLI, base: str) -> None:
    ctx = context(cli, {"Dockerfile": CACHE_DF.format(base=base), "a.txt": "a1\n", "b.txt": "b1\n"})
    first = build(cli, ctx, "-t", "cached:1")
    assert "Using cache" not in first
    image_id = ok(cli.run("build", "-q", ctx)).strip()
    again = build(cli, ctx, "-t", "cached:1")
    assert again.count(" ---> Using cache") == 5, again
    assert "Running in" not in again  # nothing ran (its speed is measured in benchmarks/)
    assert ok(cli.run("build", "-q", ctx)).strip() == image_id
    # change the first copied file: steps 1-2 cached, 3.. rerun
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a2\n")
    changed = build(cli, ctx, "-t", "cached:2")
    steps = re.split(r"^Step \d+/\d+ : ", changed, flags=re.MULTILINE)[1:]
    assert [(" ---> Using cache" in s) for s in steps] == [False, True, False, False, False, False], changed
    assert ok(cli.run("run", "--rm", "cached:2", timeout=60)) == "a2\nb1\n"
    # --no-cache reruns everything
    assert "Using cache" not in build(cli, ctx, "--no-cache")


MULTI_DF = """\
FROM {base} AS unused
RUN exit 7

FROM {base} AS deps
RUN echo deps > /deps

FROM deps AS test
RUN echo test > /test

FROM {base} AS final
COPY --from=deps /deps /deps
CMD ["cat", "/deps"]
"""


def test_multistage_target_builds_only_needed_stages(cli: CLI, base: str) -> None:
    ctx = context(cli, {"Dockerfile": MULTI_DF.format(base=base)})
    out = build(cli, ctx, "-t", "multi:final")
    assert "exit 7" not in out and "echo test" not in out
    assert ok(cli.run("run", "--rm", "multi:final", timeout=60)) == "deps\n"
    out = build(cli, ctx, "--target", "test", "-t", "multi:test")
    assert "exit 7" not in out and "echo test" in out
    assert ok(cli.run("run", "--rm", "multi:test", "cat", "/test", "/deps", timeout=60)) == "test\ndeps\n"
    proc = cli.run("build", "--target", "nope", ctx)
    one_line_error(proc, "target stage", "nope")


def test_dockerignore(cli: CLI, base: str) -> None:
    ctx = context(cli, {
        "Dockerfile": f"FROM {base}\nCOPY . /ctx/\nRUN find /ctx -type f | sort\n",
        ".dockerignore": "# comment\n*.log\n!keep.log\nsecret/\n**/*.tmp\n",
        "a.log": "x", "keep.log": "k", "secret/key": "k", "src/main.c": "int main;", "src/x.tmp": "t",
        "src/deep/y.tmp": "t",
    })
    build(cli, ctx, "-t", "ignored:1")
    listing = run_sh(cli, "ignored:1", "cd /ctx && find . -type f | sort").split()
    assert listing == ["./.dockerignore", "./Dockerfile", "./keep.log", "./src/main.c"]
    proc = cli.run("build", context(cli, {"Dockerfile": f"FROM {base}\nCOPY a.log /\n", ".dockerignore": "*.log\n",
                                          "a.log": "x"}, "ctx2"))
    one_line_error(proc, "Dockerfile:2", "a.log", ".dockerignore")


def test_errors(cli: CLI, base: str) -> None:
    proc = cli.run("build", context(cli, {"Dockerfile": f"FROM {base}\n\nBOGUS thing\n"}, "e1"))
    one_line_error(proc, "Dockerfile:3", "unknown instruction: BOGUS")
    proc = cli.run("build", context(cli, {"Dockerfile": f"FROM {base}\nCOPY missing.txt /x\n"}, "e2"))
    one_line_error(proc, "Dockerfile:2", "missing.txt")
    proc = cli.run("build", context(cli, {"Dockerfile": f"FROM {base}\nRUN echo before && exit 3\n"}, "e3"))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "before" in proc.stdout
    assert proc.stderr.strip().endswith("The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    proc = cli.run("build", context(cli, {"Dockerfile": "RUN true\n"}, "e4"))
    one_line_error(proc, "Dockerfile:1", "FROM")
    proc = cli.run("build", context(cli, {"Dockerfile": f"FROM {base}\nRUN <<EOF\necho\n"}, "e5"))
    one_line_error(proc, "Dockerfile:2", "heredoc")
    proc = cli.run("build", "-f", "/nonexistent/Dockerfile", cli.mkdir("e6"))
    one_line_error(proc, "Dockerfile")


def test_quiet_prints_only_the_id(cli: CLI, base: str) -> None:
    ctx = context(cli, {"Dockerfile": f"FROM {base}\nRUN echo noisy\n"})
    out = ok(cli.run("build", "-q", "-t", "quiet:1", ctx, timeout=120))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out), out
    assert json.loads(ok(cli.run("image", "inspect", "quiet:1")))[0]["Id"] == out.strip()


def test_network_none(cli: CLI, base: str) -> None:
    ctx = context(cli, {"Dockerfile": f"FROM {base}\nRUN ls /sys/class/net | sort | tr '\\n' ' ' > /nets\n"})
    build(cli, ctx, "--network", "none", "-t", "nonet:1")
    assert ok(cli.run("run", "--rm", "nonet:1", "cat", "/nets", timeout=60)).split() == ["lo"]


# ---------------------------------------------------------------- Debian + apt

APT_DF = """\
FROM {debian}
RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*
RUN echo 'builder:x:4242:4242::/home/builder:/bin/sh' >> /etc/passwd && echo 'builder:x:4242:' >> /etc/group \
    && mkdir -p /home/builder /data && chown builder:builder /data
COPY --chown=builder:builder notes.txt /home/builder/notes.txt
USER 4242:4242
CMD ["hello"]
"""


@pytest.mark.timeout(900)
@pytest.mark.parametrize("who", ["nosub", "sub"])
def test_apt_install(cli_factory, build_debian: str, registry: Registry, who: str) -> None:
    cli = cli_factory(who)
    ctx = context(cli, {"Dockerfile": APT_DF.format(debian=build_debian), "notes.txt": "notes\n"})
    build(cli, ctx, "-t", "apt:1", timeout=800)
    assert ok(cli.run("run", "--rm", "apt:1", timeout=60)) == "Hello, world!\n"
    owners = run_sh(cli, "apt:1", "stat -c '%n %u:%g' /home/builder/notes.txt /usr/bin/hello /data").splitlines()
    if cli.has_subids:  # a single-id container shows every file as its root's
        assert owners == ["/home/builder/notes.txt 4242:4242", "/usr/bin/hello 0:0", "/data 4242:4242"]
    dest = registry.ref(f"test/build-apt-{who}", "v1")
    ok(cli.run("push", "apt:1", dest, timeout=300))
    copy_dir = tempfile.mkdtemp(prefix="rl-build-apt-", dir=TEST_TMPDIR)
    try:
        skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{copy_dir}:x")
        in_layers = _layer_owners(copy_dir)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)
    assert in_layers["home/builder/notes.txt"] == (4242, 4242, 0o644)  # COPY --chown: recorded everywhere
    assert in_layers["usr/bin/hello"][:2] == (0, 0)
    # chown in RUN: real with subordinate ids; recorded by root emulation's supervisor without
    assert in_layers["data"][:2] == (4242, 4242)
    ok(cli.run("rmi", "apt:1"))
    ok(cli.run("pull", "-q", dest, timeout=300))
    assert run_sh(cli, dest, "stat -c '%n %u:%g' /home/builder/notes.txt /usr/bin/hello /data").splitlines() == owners
    assert ok(cli.run("run", "--rm", dest, timeout=60)) == "Hello, world!\n"
