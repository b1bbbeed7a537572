"""Write the seed corpus of the fuzz harnesses: tests/fuzz/corpus/<harness>/.

    python3 tests/fuzz/make_corpus.py        # (re)writes the generated seeds

Seeds are small real inputs: tars made with the stdlib `tarfile` and GNU tar
(sparse files), real-shaped manifests, indexes and configs, references and
Dockerfiles. The generated files are committed; regression inputs found by
fuzzing (named `regress-*`) are added by hand and never overwritten here.
Untar seeds start with the harness' mode byte (see fuzz_untar.py).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MTIME = 1_600_000_000

# fuzz_untar mode bits
GZIP_HERE, GZIP_RAW, SMALL_CHUNKS = 1, 2, 3
OVERLAY, USERXATTR, NO_DEVICES, CHOWN, OVERRIDE, RAW_CHECKSUMS = 4, 8, 16, 32, 64, 128


def write(harness: str, name: str, data: bytes) -> None:
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ tars


class Tar:
    def __init__(self, fmt: int = tarfile.PAX_FORMAT, pax: dict[str, str] | None = None) -> None:
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode="w", format=fmt, pax_headers=pax)  # noqa: SIM115

    def add(self, name: str, kind: bytes, data: bytes = b"", **kw: Any) -> Tar:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = int(kw.get("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644))
        ti.uid = int(kw.get("uid", 0))
        ti.gid = int(kw.get("gid", 0))
        ti.mtime = kw.get("mtime", MTIME)
        ti.linkname = str(kw.get("link", ""))
        ti.devmajor, ti.devminor = kw.get("dev", (0, 0))
        if "pax" in kw:
            ti.pax_headers = dict(kw["pax"])
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data) if data else None)
        return self

    def file(self, name: str, data: bytes = b"", **kw: Any) -> Tar:
        return self.add(name, tarfile.REGTYPE, data, **kw)

    def dir(self, name: str, **kw: Any) -> Tar:
        return self.add(name, tarfile.DIRTYPE, **kw)

    def symlink(self, name: str, target: str, **kw: Any) -> Tar:
        return self.add(name, tarfile.SYMTYPE, link=target, mode=0o777, **kw)

    def hardlink(self, name: str, target: str, **kw: Any) -> Tar:
        return self.add(name, tarfile.LNKTYPE, link=target, **kw)

    def data(self) -> bytes:
        self.tf.close()
        return trim(self.buf.getvalue())


def trim(tar: bytes) -> bytes:
    """Drop the record padding after the end-of-archive blocks."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.getmembers()
        end = tf.offset
    return tar[:end] + b"\0" * 1024


def untar_seeds() -> dict[str, tuple[int, bytes]]:
    seeds: dict[str, tuple[int, bytes]] = {}

    def add(name: str, mode: int, tar: bytes) -> None:
        seeds[name] = (mode, tar)

    for fmt, label in ((tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu"),
                       (tarfile.PAX_FORMAT, "pax")):
        add(f"types-{label}", 0, Tar(fmt).dir("d", mode=0o750).file("d/f", b"hello\n")
            .symlink("d/rel", "f").symlink("abs", "/etc/passwd").hardlink("d/hard", "d/f")
            .add("d/fifo", tarfile.FIFOTYPE).file("empty").data())
    deep = "/".join(f"c{i}-" + "x" * 40 for i in range(7))
    add("long-names-gnu", 0, Tar(tarfile.GNU_FORMAT).file(f"{deep}/f", b"deep")
        .symlink(f"{deep}/s", "/" + "t" * 150).hardlink("hl", f"{deep}/f").data())
    add("long-names-pax", 0, Tar().file(f"{deep}/f", b"deep").symlink("s", "t" * 150).data())
    add("ustar-prefix", 0, Tar(tarfile.USTAR_FORMAT).file("p" * 80 + "/" + "q" * 60 + "/leaf", b"x").data())
    # escapes: names and links that point at ../sentinel (the harness' outside dir)
    add("dotdot-names", 0, Tar().file("../sentinel/secret", b"pwned").file("a/../../x", b"x")
        .file("/sentinel/abs", b"x").file("./b/./c/../d").data())
    for i, target in enumerate(("../sentinel", "/", "../../..", "/../sentinel", "sub/../../sentinel")):
        add(f"symlink-escape-{i}", 0, Tar().dir("sentinel").symlink("link", target)
            .file("link/secret", b"pwned").dir("link/newdir").file("link/newdir/f", b"x").data())
    add("symlink-escape-missing", 0, Tar().symlink("link", "../sentinel").file("link/secret", b"x").data())
    add("symlink-chain", 0, Tar().dir("sentinel").symlink("a", "b").symlink("b", "c")
        .symlink("c", "../sentinel").file("a/secret", b"pwned").data())
    add("symlink-loop", 0, Tar().symlink("a", "b").symlink("b", "a").file("a/x", b"x").data())
    add("symlink-replaced-by-file", 0, Tar().symlink("s", "../sentinel/secret").file("s", b"pwned").data())
    add("symlink-replaced-by-dir", 0, Tar().symlink("s", "../sentinel").dir("s", mode=0o700)
        .file("s/secret", b"x").data())
    add("hardlink-escape-0", 0, Tar().hardlink("h", "../sentinel/secret").data())
    add("hardlink-escape-1", 0, Tar().dir("sentinel").file("sentinel/secret").symlink("d", "../sentinel")
        .hardlink("h2", "d/secret").file("h2", b"pwned").data())
    add("hardlink-escape-2", 0, Tar().symlink("d", "/..").hardlink("h", "d/sentinel/secret").data())
    add("hardlink-then-write", 0, Tar().file("f", b"orig").hardlink("h", "f").file("h", b"new")
        .symlink("s", "f").hardlink("hs", "s").data())
    add("hardlink-to-dir", 0, Tar().dir("d").hardlink("d2", "d").data())
    add("hardlink-to-self", 0, Tar().file("f").hardlink("f", "f").hardlink("./f", "f/.").data())
    add("hardlink-to-root", 0, Tar().hardlink("root", "").data())
    add("replace", 0, Tar().file("x", b"file").dir("x").file("x/inner").file("x", b"file again")
        .dir("y").symlink("y", "x").file("twice", b"1").file("twice", b"2").data())
    add("readonly-dirs", 0, Tar().dir("ro", mode=0o555).file("ro/f", b"x").dir("ro/sub", mode=0o000)
        .file("ro/sub/g", b"y").dir(".", mode=0o711).data())
    add("setid-bits", OVERRIDE, Tar().file("suid", b"x", mode=0o4755, uid=1000, gid=1000)
        .dir("sgid", mode=0o2775).file("sgid/f").dir("sticky", mode=0o1777).data())
    # whiteouts, in flatten and overlay mode
    wh = (Tar().dir("etc").file("etc/keep").file("etc/.wh.removed").dir("opq").file("opq/.wh..wh..opq")
          .file("opq/new", b"n").file(".wh..wh.plnk").file(".wh.etc").file("a/b/.wh..wh..opq").data())
    add("whiteouts-flatten", 0, wh)
    add("whiteouts-overlay", OVERLAY, wh)
    add("whiteouts-overlay-userxattr", OVERLAY | USERXATTR, wh)
    for i, name in enumerate((".wh...", "d/.wh..", ".wh.sentinel", "l/.wh.secret", "l/.wh..wh..opq")):
        for mode in (0, OVERLAY):
            add(f"whiteout-escape-{i}-{mode}", mode, Tar().dir("d").symlink("l", "../sentinel")
                .file(name).data())
    add("whiteout-of-own-member", 0, Tar().file("a").file(".wh.a").dir("o").file("o/x")
        .file("o/.wh..wh..opq").data())
    # devices
    dev = (Tar().add("null", tarfile.CHRTYPE, dev=(1, 3)).add("loop", tarfile.BLKTYPE, dev=(7, 0))
           .add("wh", tarfile.CHRTYPE, dev=(0, 0)).add("fifo", tarfile.FIFOTYPE).data())
    add("devices", 0, dev)
    add("devices-refused", NO_DEVICES, dev)
    add("devices-override", OVERRIDE, dev)
    # PAX records
    add("pax-records", 0, Tar().file("header-name", b"abc", pax={
        "path": "real-name", "mtime": "1234567890.123456789", "atime": "-5.5", "uid": "3000000",
        "gid": "4294967295", "SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.containers.override_stat": "0:0:04755:file", "comment": "x" * 100}).data())
    add("pax-xattrs-override", OVERRIDE, Tar().dir("d", pax={"SCHILY.xattr.user.a": "1"})
        .file("d/f", pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}).data())
    add("pax-global", 0, Tar(pax={"mtime": "1000", "path": "global-name"}).file("a", b"z")
        .file("b", b"z", pax={"mtime": "2000", "path": ""}).data())
    add("pax-linkpath", 0, Tar().symlink("s", "x", pax={"linkpath": "../sentinel"})
        .hardlink("h", "y", pax={"linkpath": "s"}).data())
    add("base256-ids", CHOWN, Tar(tarfile.GNU_FORMAT).file("big", b"x", uid=0o7777777 + 5, gid=3_000_000).data())
    add("chown-ids", CHOWN, Tar().file("f", uid=1000, gid=1000).dir("d", uid=5, gid=6)
        .symlink("d/l", "f", uid=7, gid=8).data())
    add("v7-dir-slash", 0, Tar(tarfile.GNU_FORMAT).file("dir/").file("dir/f", b"x").data())
    add("vendor-types", 0, Tar(tarfile.GNU_FORMAT).add("label", b"V").add("dump", b"D")
        .add("cont", b"7", b"contiguous").data())
    plain = Tar().dir("d").file("d/f", b"x" * 3000).symlink("s", "d/f").data()
    add("gzip-here", GZIP_HERE, plain)
    add("gzip-raw", GZIP_RAW, gzip.compress(plain, mtime=0) + gzip.compress(b"", mtime=0))
    add("gzip-raw-trailing-zeros", GZIP_RAW, gzip.compress(plain, mtime=0) + b"\0" * 100)
    add("small-chunks", SMALL_CHUNKS, plain)
    add("truncated-data", RAW_CHECKSUMS, plain[:700])
    add("truncated-header", RAW_CHECKSUMS, plain[:300])
    add("no-end-marker", RAW_CHECKSUMS, plain[:1536])
    bad = bytearray(plain)
    bad[148:156] = b"0000000\0"
    add("bad-checksum", RAW_CHECKSUMS, bytes(bad))
    add("empty", 0, b"")
    for label, opts in _gnu_tar_sparse_variants():
        add(f"sparse-{label}", 0, opts)
    return seeds


def _gnu_tar_sparse_variants() -> list[tuple[str, bytes]]:
    """Sparse files as GNU tar writes them (old GNU 'S' and PAX 0.0, 0.1, 1.0)."""
    if shutil.which("tar") is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "sparse"), "wb") as f:
            f.seek(5000)
            f.write(b"middle")
            f.seek(70000)
            f.write(b"end")
            f.truncate(100000)
        pax = ["--format=posix", "--pax-option=delete=atime,delete=ctime"]
        for label, opts in (("gnu", ["--format=gnu"]), ("pax-0.0", [*pax, "--sparse-version=0.0"]),
                            ("pax-0.1", [*pax, "--sparse-version=0.1"]),
                            ("pax-1.0", [*pax, "--sparse-version=1.0"])):
            tar = subprocess.run(
                ["tar", "-C", tmp, "--sparse", "--owner=0", "--group=0", "--numeric-owner",
                 "--mtime=@1600000000", *opts, "-cf", "-", "sparse"],
                check=True, capture_output=True).stdout
            out.append((label, trim(tar)))
    return out


# ------------------------------------------------------------------ manifests

D = "sha256:" + "0" * 63
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest(i: int) -> str:
    return D + "0123456789abcdef"[i % 16]


def manifest_seeds() -> dict[str, bytes]:
    def doc(selector: int, obj: object) -> bytes:
        return bytes([selector]) + json.dumps(obj, indent=1).encode()

    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(1), "size": 3000}
    oci = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(2), "size": 600},
           "layers": [layer, {**layer, "digest": digest(3), "urls": ["https://example.com/l"]}],
           "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    plat = {"architecture": "arm", "os": "linux", "variant": "v7", "os.version": "1", "os.features": ["f"]}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(4), "size": 500,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": OCI_MANIFEST, "digest": digest(5), "size": 500, "platform": plat},
        {"mediaType": OCI_MANIFEST, "digest": digest(6), "size": 500,
         "platform": {"architecture": "aarch64", "os": "Linux", "variant": "8"}},
        {"mediaType": OCI_MANIFEST, "digest": digest(7), "size": 500,
         "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}]}
    docker = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
              "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest(8),
                         "size": 1000},
              "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                          "digest": digest(9), "size": 1}]}
    mlist = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
             "manifests": [{"mediaType": docker["mediaType"], "digest": digest(10), "size": 700,
                            "platform": {"architecture": "ppc64le", "os": "linux"}}]}
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(11), "size": 2},
                "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": digest(12), "size": 9}}
    no_type = {k: v for k, v in oci.items() if k != "mediaType"}
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"User": "1000:1000", "Env": ["PATH=/usr/bin:/bin", "A=b"], "Entrypoint": ["/init"],
                         "Cmd": None, "WorkingDir": "/app", "ExposedPorts": {"80/tcp": {}},
                         "Volumes": {"/data": {}}, "Labels": {"a": "b"}, "StopSignal": "SIGTERM"},
              "rootfs": {"type": "layers", "diff_ids": [digest(13), digest(14)]},
              "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD file", "empty_layer": False},
                          {"created_by": "CMD", "empty_layer": True, "comment": "c"}]}
    return {
        "oci-manifest": doc(0, oci),
        "oci-index": doc(0, index),
        "docker-manifest": doc(0, docker),
        "docker-manifest-list": doc(0, mlist),
        "artifact-with-subject": doc(0, artifact),
        "no-media-type-ct-oci": doc(1 | (1 << 2), no_type),
        "no-media-type-ct-json": doc(0 | (4 << 2), no_type),
        "index-shape-only": doc(0, {"schemaVersion": 2, "manifests": []}),
        "schema1": doc(0, {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}),
        "schema1-ct": doc(1 | (6 << 2), {"schemaVersion": 1}),
        "bad-digest": doc(0, {**oci, "layers": [{**layer, "digest": "sha256:XYZ"}]}),
        "negative-size": doc(0, {**oci, "layers": [{**layer, "size": -1}]}),
        "not-object": doc(0, [1, 2]),
        "not-json": b"\x00{\"schemaVersion\": 2,",
        "image-config": doc(2, config),
        "image-config-minimal": doc(2, {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers"}}),
        "image-config-bad-rootfs": doc(2, {"rootfs": {"type": "other"}}),
        "platform-os-arch-variant": b"\x03linux/arm/v7",
        "platform-arch": b"\x03aarch64",
        "platform-bad": b"\x03linux/",
    }


# ------------------------------------------------------------------ references


def reference_seeds() -> dict[str, bytes]:
    refs = [
        "busybox", "busybox:1.36", "library/busybox:latest", "docker.io/library/busybox",
        "index.docker.io/user/app:v1", "localhost/app", "localhost:5000/a/b/c:tag",
        "127.0.0.1:5000/x@" + digest(1), "[::1]:5000/ns/img:t@" + digest(2), "quay.io/org/repo:tag",
        "registry.example.com/a__b/c-d.e_f:1.0-rc_1", "Upper/case", "a" * 300, "x:" + "t" * 129,
        "ghcr.io/" + "a" * 64, "0" * 64, "sha256:" + "a" * 64, "img@sha512:" + "b" * 128, "img@md5:abc",
        "img@", ":tag", "/x", "x/", "a//b", " busybox", "host:port/x", "example.com:/x",
    ]
    return {f"ref-{i:02d}": r.encode() for i, r in enumerate(refs)}


# ------------------------------------------------------------------ Dockerfiles


DOCKERFILES = {
    "multistage": """\
# syntax=docker/dockerfile:1
ARG BASE=busybox
ARG TAG
FROM ${BASE}:${TAG:-latest} AS build
ARG N=1
ENV PATH=/usr/local/bin:$PATH \\
    HOME="/root" OTHER='single $quoted'
WORKDIR /src
COPY --chown=1000:1000 --chmod=0755 . .
RUN --mount=type=cache,target=/c set -e; \\
    # a comment inside a continuation
    echo "$N" > /out
FROM scratch
COPY --from=build /out /out
LABEL a=b "c d"="e f" multi=line\\ value
EXPOSE 80 443/tcp 53/udp 8000-8002
VOLUME ["/data", "/logs"]
USER 1000:1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD ["/bin/check"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hello
""",
    "heredocs": """\
FROM busybox
RUN <<EOF
echo one
echo "$HOME"
EOF
RUN <<-"END" cat > /x && <<'TWO' sh
\tquoted $NOT_EXPANDED
\tEND
echo two
TWO
COPY <<conf /etc/app.conf
key=${A:-default}
conf
""",
    "escape-backtick": """\
# escape=`
FROM mcr.microsoft.com/windows
RUN dir c:\\ `
    && echo done
COPY a`\tb c
""",
    "legacy-forms": """\
FROM busybox
MAINTAINER someone <a@b.c>
ENV LEGACY value with spaces
ENV A=1 B=${A}2 C=${UNSET:+alt} D=${A:?must be set}
ONBUILD RUN echo triggered
ONBUILD COPY . /app
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
HEALTHCHECK NONE
add --chown=0 http://example.com/x /x
\tcmd\t["tab"]
""",
    "errors-unknown": "FROM x\nFROB y\n",
    "errors-no-from": "ARG A\nRUN echo\n",
    "errors-heredoc": "FROM x\nRUN <<EOF\nnever ends\n",
    "errors-substitution": "FROM x\nENV A=${B:=c} C=${}\nWORKDIR \"unterminated\n",
    "errors-onbuild": "FROM x\nONBUILD ONBUILD RUN x\n",
    "crlf": "FROM x\r\nRUN a \\\r\n  b\r\nCMD [\"x\"]\r\n",
    "bad-escape-directive": "# escape=x\nFROM x\n",
    "duration-forms": "FROM x\nHEALTHCHECK --interval=1h2m3.5s --start-period=0 --start-interval=10ms CMD x\n",
}


def dockerfile_seeds() -> dict[str, bytes]:
    return {name: text.encode() for name, text in DOCKERFILES.items()}


# ------------------------------------------------------------------ main


def main() -> None:
    writers: dict[str, Callable[[], dict[str, bytes]]] = {
        "manifest": manifest_seeds,
        "reference": reference_seeds,
        "dockerfile": dockerfile_seeds,
    }
    for harness, make in writers.items():
        for name, data in make().items():
            write(harness, name, data)
    for name, (mode, tar) in untar_seeds().items():
        write("untar", name, bytes([mode]) + tar)


if __name__ == "__main__":
    main()
