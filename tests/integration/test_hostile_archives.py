"""Hostile images end to end, as root, rltest-sub and rltest-nosub: archives for
`load` and `import` with escaping names, symlinked members, nested indexes and
bombs; layers with a directory replaced by a symlink, setuid files, hostile
names and configs (then run, diff, history, images, inspect, export, commit);
and `cp` against symlinks inside the container.

Every refusal is one line on stderr with exit 125; nothing outside the store
changes; a good image loads and runs afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from helpers.checks import ok, one_line_error
from helpers.images import pristine_busybox_layer
from helpers.users import CLI

pytestmark = pytest.mark.needs_userns


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- building archives


@dataclass
class Member:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def tar_bytes(members: Iterable[Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.mtime = m.kind, m.mode, 1700000000
            info.uid = info.gid = m.uid
            info.linkname = m.target
            info.pax_headers = dict(m.pax)
            if m.kind == tarfile.REGTYPE:
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return raw.getvalue()


def f(name: str, data: bytes = b"", **kw: object) -> Member:
    return Member(name, data, **kw)  # type: ignore[arg-type]


def d(name: str, mode: int = 0o755, **kw: object) -> Member:
    return Member(name, kind=tarfile.DIRTYPE, mode=mode, **kw)  # type: ignore[arg-type]


def link(name: str, target: str) -> Member:
    return Member(name, kind=tarfile.SYMTYPE, target=target, mode=0o777)


def hard(name: str, target: str) -> Member:
    return Member(name, kind=tarfile.LNKTYPE, target=target)


def config_for(diff_ids: list[str], **extra: object) -> dict[str, object]:
    config: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "base"}],
    }
    config.update(extra)
    return config


def docker_archive(
    layers: list[bytes],
    tag: str = "hostile/img:1",
    *,
    config: dict[str, object] | None = None,
    entry: dict[str, object] | None = None,
    extra: Iterable[Member] = (),
    gzip_layers: bool = False,
) -> bytes:
    """A docker-archive (podman/skopeo layout) of plain or gzip'd layer tars."""
    members = []
    names = []
    for layer in layers:
        blob = gzip.compress(layer, compresslevel=1, mtime=0) if gzip_layers else layer
        name = f"{sha(layer)[7:]}.tar"
        names.append(name)
        members.append(f(name, blob))
    cfg = json.dumps(config or config_for([sha(x) for x in layers])).encode()
    members.append(f(f"{sha(cfg)[7:]}.json", cfg))
    manifest = entry or {"Config": f"{sha(cfg)[7:]}.json", "RepoTags": [tag], "Layers": names}
    members.append(f("manifest.json", json.dumps([manifest]).encode()))
    return tar_bytes([*members, *extra])


def write(cli: CLI, name: str, data: bytes) -> str:
    path = os.path.join(cli.mkdir(f"in-{uuid.uuid4().hex[:8]}"), name)
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, 0o644)
    return path


@pytest.fixture(scope="session")
def base_layer(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A busybox rootfs as a plain layer tar."""
    return pristine_busybox_layer(tmp_path_factory.mktemp("hostile-rootfs"))


def good_image_loads_and_runs(cli: CLI, base_layer: bytes) -> None:
    top = tar_bytes([f("file", b"good\n")])
    path = write(cli, "good.tar", docker_archive([base_layer, top], "hostile/good:1"))
    ok(cli.run("load", "-i", path))
    assert ok(cli.run("run", "--rm", "hostile/good:1", "cat", "/file")) == "good\n"


def images(cli: CLI) -> list[str]:
    return ok(cli.run("images", "-q")).split()


@pytest.fixture
def outside(cli: CLI) -> str:
    """A host directory with a secret file, owned by the test user (a target for escapes)."""
    top = cli.mkdir(f"outside-{uuid.uuid4().hex[:8]}")
    with open(os.path.join(top, "secret"), "w") as out:
        out.write("secret\n")
    os.chown(os.path.join(top, "secret"), cli.uid, cli.gid)
    return top


def read(path: str) -> bytes:
    with open(path, "rb") as src:
        return src.read()


def untouched(top: str) -> bool:
    return (
        sorted(os.listdir(top)) == ["secret"] and read(os.path.join(top, "secret")) == b"secret\n"
    )


# ---------------------------------------------------------------- archive structure


def test_load_refuses_names_outside_the_archive(cli: CLI, base_layer: bytes, outside: str) -> None:
    layer = tar_bytes([f("x", b"x")])
    passwd_before = read("/etc/passwd")
    secret = os.path.join(outside, "secret")
    cases = {
        "config-dotdot": {"Config": "../../../../../etc/passwd", "Layers": []},
        "config-abs": {"Config": secret, "Layers": []},
        "layer-dotdot": None,  # filled below
    }
    cfg = json.dumps(config_for([sha(layer)])).encode()
    cfg_name = f"{sha(cfg)[7:]}.json"
    cases["layer-dotdot"] = {"Config": cfg_name, "Layers": ["../../../../../../" + secret]}
    for name, entry in cases.items():
        data = docker_archive([layer], entry=entry)
        proc = cli.run("load", "-i", write(cli, f"{name}.tar", data))
        one_line_error(proc)
        assert "missing from the archive" in proc.stderr or "not valid JSON" in proc.stderr, (
            name,
            proc.stderr,
        )
    assert read("/etc/passwd") == passwd_before
    assert images(cli) == [] and untouched(outside)
    good_image_loads_and_runs(cli, base_layer)


def test_load_symlinked_and_hardlinked_members(cli: CLI, base_layer: bytes, outside: str) -> None:
    layer = tar_bytes([f("x", b"x")])
    secret = os.path.join(outside, "secret")
    cases = {
        "symlink-abs": ([link(f"{sha(layer)[7:]}.tar", secret)], "missing from the archive"),
        "symlink-up": ([link(f"{sha(layer)[7:]}.tar", "../../../../../../" + secret)], "missing"),
        "symlink-loop": (
            [link(f"{sha(layer)[7:]}.tar", "a"), link("a", "b"), link("b", "a")],
            "too many levels of links",
        ),
        "hardlink-abs": ([hard(f"{sha(layer)[7:]}.tar", secret)], "missing"),
        "symlink-dir": ([link(f"{sha(layer)[7:]}.tar", "/")], "missing"),
    }
    for name, (members, word) in cases.items():
        full = docker_archive([layer])
        # drop the real layer member, keep the hostile stand-in
        with tarfile.open(fileobj=io.BytesIO(full)) as src:
            kept = [
                Member(m.name, src.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in src.getmembers()
                if m.name != f"{sha(layer)[7:]}.tar"
            ]
        data = tar_bytes([*kept, *members])
        one_line_error(cli.run("load", "-i", write(cli, f"{name}.tar", data)), word)
    assert images(cli) == [] and untouched(outside)
    good_image_loads_and_runs(cli, base_layer)


def test_load_archive_members_with_escaping_names_write_nothing(
    cli: CLI, base_layer: bytes, outside: str
) -> None:
    marker = f"rl-hostile-{uuid.uuid4().hex}"
    top = tar_bytes([f("file", b"top\n")])
    extra = [
        f(f"../../../../../../../../tmp/{marker}", b"pwned"),
        f(f"{outside}/pwned", b"pwned"),
        link("escape", outside),
        f("escape/pwned", b"pwned"),
    ]
    data = docker_archive([base_layer, top], "hostile/names:1", extra=extra)
    ok(cli.run("load", "-i", write(cli, "names.tar", data)))
    assert ok(cli.run("run", "--rm", "hostile/names:1", "cat", "/file")) == "top\n"
    assert not os.path.exists(f"/tmp/{marker}") and untouched(outside)


def _oci_archive(
    index: dict[str, object], blobs: list[bytes], extra: Iterable[Member] = ()
) -> bytes:
    members = [f("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    members += [f(f"blobs/sha256/{sha(b)[7:]}", b) for b in blobs]
    members.append(f("index.json", json.dumps(index).encode()))
    return tar_bytes([*members, *extra])


def _oci_image(layers: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(manifest, blobs) of an OCI image of plain layers."""
    cfg = json.dumps(config_for([sha(x) for x in layers])).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(x), "size": len(x)}
                   for x in layers],
    }).encode()  # fmt: skip
    return manifest, [cfg, manifest, *layers]


def _index(*entries: dict[str, object]) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": list(entries)}  # fmt: skip


def _entry(data: bytes, media_type: str, name: str = "") -> dict[str, object]:
    out: dict[str, object] = {"mediaType": media_type, "digest": sha(data), "size": len(data)}
    if name:
        out["annotations"] = {"org.opencontainers.image.ref.name": name}
    return out


OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"


def test_load_hostile_oci_archives(cli: CLI, base_layer: bytes, outside: str) -> None:
    layer = tar_bytes([f("x", b"x")])
    manifest, blobs = _oci_image([layer])
    secret = os.path.join(outside, "secret")
    inner = json.dumps(_index(_entry(manifest, OCI_M))).encode()
    middle = json.dumps(_index(_entry(inner, OCI_I))).encode()
    cases: dict[str, tuple[bytes, str]] = {
        "digest-dotdot": (
            _oci_archive(
                _index({"mediaType": OCI_M, "digest": "sha256:../../../etc/passwd", "size": 1}),
                blobs,
            ),
            "bad digest",
        ),
        "digest-64-dotdot": (
            _oci_archive(
                _index({"mediaType": OCI_M, "digest": "sha256:" + "../" * 21 + "x", "size": 1}),
                blobs,
            ),
            "bad digest",
        ),
        "blob-symlink": (
            _oci_archive(
                _index(_entry(manifest, OCI_M, "hostile/oci:1")),
                [b for b in blobs if b is not layer],
                [link(f"blobs/sha256/{sha(layer)[7:]}", secret)],
            ),
            "missing from the archive",
        ),
        "index-in-index-in-index": (
            _oci_archive(_index(_entry(middle, OCI_I, "hostile/oci:1")), [*blobs, inner, middle]),
            "no image for platform",
        ),
        "size-negative": (
            _oci_archive(_index({"mediaType": OCI_M, "digest": sha(manifest), "size": -1}), blobs),
            "non-negative",
        ),
        "manifests-number": (
            _oci_archive({"schemaVersion": 2, "manifests": 3}, blobs),
            "not a list",
        ),
        "wrong-size": (
            _oci_archive(_index({"mediaType": OCI_M, "digest": sha(manifest), "size": 5}), blobs),
            "digest",
        ),
    }
    for name, (data, word) in cases.items():
        one_line_error(cli.run("load", "-i", write(cli, f"{name}.tar", data)), word)
    assert images(cli) == [] and untouched(outside)
    good_image_loads_and_runs(cli, base_layer)


def test_load_config_with_escaping_diff_ids(cli: CLI, base_layer: bytes, outside: str) -> None:
    layer = tar_bytes([f("x", b"x")])
    evil = "sha256:" + ("../" * 21 + "x")
    cfg = config_for([evil])
    one_line_error(
        cli.run("load", "-i", write(cli, "diffid.tar", docker_archive([layer], config=cfg))),
        "bad diff_id",
    )
    assert images(cli) == [] and untouched(outside)
    assert not os.path.exists(os.path.join(cli.store, "x"))
    good_image_loads_and_runs(cli, base_layer)


# ---------------------------------------------------------------- bombs


def _zeros_layer(size: int) -> bytes:
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = size, 0o644, 1700000000
    return info.tobuf(tarfile.PAX_FORMAT) + b"\0" * size + b"\0" * (-size % 512) + b"\0" * 1024


def test_bombs_in_load_and_import(cli: CLI, base_layer: bytes) -> None:
    bomb = _zeros_layer(48 << 20)
    limits = {"ROOTLESS_MAX_LAYER_SIZE": "8M", "ROOTLESS_MAX_ARCHIVE_SIZE": "16M"}
    # a gzip'd layer inside an archive
    path = write(cli, "layer-bomb.tar", docker_archive([bomb], "hostile/bomb:1", gzip_layers=True))
    assert os.path.getsize(path) < 1 << 20
    proc = cli.run("load", "-i", path, env=limits)
    one_line_error(
        proc, f"layer {sha(bomb)[7:]}.tar of hostile/bomb:1", "8 MiB (ROOTLESS_MAX_LAYER_SIZE)"
    )
    # a compressed archive that inflates past the archive limit
    whole = gzip.compress(docker_archive([bomb], "hostile/bomb:2"), compresslevel=1)
    proc = cli.run("load", "-i", write(cli, "archive-bomb.tar.gz", whole), env=limits)
    one_line_error(proc, "16 MiB (ROOTLESS_MAX_ARCHIVE_SIZE)")
    # import of a compressed tarball
    proc = cli.run(
        "import", write(cli, "import-bomb.tar.gz", gzip.compress(bomb, 1)), "bomb:3", env=limits
    )
    one_line_error(proc, "8 MiB (ROOTLESS_MAX_LAYER_SIZE)")
    # a sparse file of a petabyte in a layer
    sparse = tarfile.TarInfo("GNUSparseFile.0/huge")
    sparse.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                          "GNU.sparse.name": "huge", "GNU.sparse.realsize": str(1 << 50)}  # fmt: skip
    body = b"1\n0\n0\n".ljust(512, b"\0")
    sparse.size = len(body)
    sparse_layer = sparse.tobuf(tarfile.PAX_FORMAT) + body + b"\0" * 1024
    proc = cli.run(
        "load", "-i", write(cli, "sparse.tar", docker_archive([sparse_layer], "hostile/sparse:1"))
    )
    one_line_error(proc, "huge: file of 1125899906842624 bytes", "(ROOTLESS_MAX_FILE_SIZE)")
    assert images(cli) == []
    layers = os.path.join(cli.store, "layers")
    leftovers = [n for n in os.listdir(layers) if len(n) == 64] if os.path.isdir(layers) else []
    assert leftovers == []
    good_image_loads_and_runs(cli, base_layer)


# ---------------------------------------------------------------- hostile layers, end to end


def test_unpack_refusals_are_one_line(cli: CLI, base_layer: bytes) -> None:
    long_path = "/".join(["d" * 200] * 25)  # 5000 bytes: over PATH_MAX
    cases = {
        "long-path": ([f(long_path, b"x")], "member name too long"),
        "long-component": ([f("c" * 300, b"x")], "File name too long"),
        "whiteout-dotdot": ([f("a/.wh...")], "bad whiteout name"),
        "whiteout-dot": ([f(".wh..")], "bad whiteout name"),
        "newline-name": ([hard("evil\nname\r", "missing\ntarget")], "evil?name?"),
    }
    for name, (members, word) in cases.items():
        layer = tar_bytes(members)
        data = docker_archive([base_layer, layer], f"hostile/{name}:1")
        one_line_error(cli.run("load", "-i", write(cli, f"{name}.tar", data)), word)
        assert not os.path.exists(os.path.join(cli.store, "layers", sha(layer)[7:]))
    assert images(cli) == []
    good_image_loads_and_runs(cli, base_layer)


def test_directory_replaced_by_symlink_in_a_later_layer(
    cli: CLI, base_layer: bytes, outside: str
) -> None:
    layers = [
        base_layer,
        tar_bytes([d("d"), f("d/keep", b"keep\n"), d("e"), f("e/keep", b"e\n")]),
        tar_bytes([link("d", outside), link("e", "../../../../../../../../" + outside)]),
    ]
    path = write(cli, "swap.tar", docker_archive(layers, "hostile/swap:1"))
    ok(cli.run("load", "-i", path))
    # through the links the container reaches its own tree only; then it puts a
    # directory back at /d holding a file named like the host's secret
    script = (
        f"cat /d/secret; mkdir -p {outside} && echo pwned > /e/new; "
        "rm -f /d/keep /e/keep; rm /d && mkdir /d && echo mine > /d/secret; true"
    )
    out = ok(cli.run("run", "--name", "swap", "hostile/swap:1", "sh", "-c", script))
    assert "secret\n" not in out
    diff = ok(cli.run("diff", "swap")).splitlines()
    # a view that followed the lower layer's /d link to the host would see its
    # secret and say "C /d/secret"
    assert "A /d/secret" in diff and f"A {outside}/new" in diff, diff
    ok(cli.run("commit", "swap", "hostile/swapped:1"))
    export = os.path.join(cli.mkdir("export"), "swap.tar")
    ok(cli.run("export", "-o", export, "swap"))
    with tarfile.open(export) as tar:
        member = tar.extractfile("d/secret")
        assert member is not None and member.read() == b"mine\n"
        assert tar.getmember("e").issym()
    show = f"cat /d/secret {outside}/new"
    assert ok(cli.run("run", "--rm", "hostile/swapped:1", "sh", "-c", show)) == "mine\npwned\n"
    assert untouched(outside)


def test_setuid_files_are_not_setuid_on_the_host_without_subids(
    cli: CLI, base_layer: bytes
) -> None:
    top = tar_bytes([
        f("suid", b"#!/bin/sh\nid\n", mode=0o4755),
        f("sgid", b"#!/bin/sh\nid\n", mode=0o2755),
        d("sgiddir", mode=0o2775),
        f("capped", b"x", mode=0o755, pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\x00" * 16}),
    ])  # fmt: skip
    path = write(cli, "suid.tar", docker_archive([base_layer, top], "hostile/suid:1"))
    ok(cli.run("load", "-i", path))
    diff_dir = _layer_dir(cli, top)
    modes = {n: os.lstat(os.path.join(diff_dir, n)).st_mode for n in ("suid", "sgid", "sgiddir")}
    special = stat.S_ISUID | stat.S_ISGID
    if cli.name == "nosub":
        assert all(not m & special for m in modes.values()), {k: oct(v) for k, v in modes.items()}
    else:  # root or the user's subordinate ids own them: kept as data
        assert modes["suid"] & stat.S_ISUID and modes["sgid"] & stat.S_ISGID
        # container root is root, or the user: setuid to oneself grants nothing
        assert os.lstat(os.path.join(diff_dir, "suid")).st_uid == (
            0 if cli.name == "root" else cli.uid
        )
    # the store stays private: nobody else can reach (and run) what it holds
    assert stat.S_IMODE(os.stat(cli.store).st_mode) & 0o077 == 0
    for name in ("capped",):
        assert "security.capability" not in os.listxattr(os.path.join(diff_dir, name))
    # inside: no_new_privs; the container user gets no privilege from them
    out = ok(cli.run("run", "--rm", "--user", "1000", "hostile/suid:1", "sh", "-c",
                     "grep NoNewPrivs /proc/self/status; /suid | tr ' ' '\\n' | grep ^uid="))  # fmt: skip
    assert "NoNewPrivs:\t1" in out and "uid=1000" in out


def test_absurd_modes_run_and_remove(cli: CLI, base_layer: bytes) -> None:
    top = tar_bytes([
        d("locked", mode=0),
        d("locked/deeper", mode=0),
        f("locked/deeper/file", b"deep\n", mode=0),
        d("everything", mode=0o7777),
        f("everything/file", b"all\n", mode=0o7777),
        d("locked", mode=0),  # listed again after its content
    ])  # fmt: skip
    ok(
        cli.run(
            "load",
            "-i",
            write(cli, "modes.tar", docker_archive([base_layer, top], "hostile/modes:1")),
        )
    )
    out = ok(cli.run("run", "--rm", "hostile/modes:1", "sh", "-c",
                     "cat /locked/deeper/file /everything/file; stat -c %a /locked /everything"))  # fmt: skip
    assert out.startswith("deep\nall\n"), out
    ok(cli.run("rmi", "hostile/modes:1"))
    layers = os.path.join(cli.store, "layers")
    assert not os.path.exists(os.path.join(layers, sha(top)[7:]))
    good_image_loads_and_runs(cli, base_layer)


def _layer_dir(cli: CLI, layer: bytes) -> str:
    return os.path.join(cli.store, "layers", sha(layer)[7:], "diff")


def run_binary(cli: CLI, *args: str) -> bytes:
    """Run a command whose output may hold raw (non-UTF-8) names; it must succeed."""
    proc = cli.run(*args, input=b"")
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, (args, proc.stderr)
    return bytes(proc.stdout)


HOSTILE_NAMES = ["new\nline", "bad-\udcff-utf8", "tab\tand\rcr", "esc\x1b[31mred", "-rf", " lead"]


def test_hostile_names_and_config_do_not_crash_the_cli(cli: CLI, base_layer: bytes) -> None:
    top = tar_bytes([f(n, b"x") for n in HOSTILE_NAMES] + [d("dir\nx"), f("dir\nx/in", b"y")])
    history = [
        {"created_by": "evil\nline\rcr\x1b[2J", "comment": "\ud800 lone surrogate"},
        {"created": "\n\n", "created_by": "\udcff", "empty_layer": True},
    ]
    config = config_for([sha(base_layer), sha(top)], history=history, created="not a date\n",
                        author="\ud800\n")  # fmt: skip
    config["config"] = {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin", "X=\ud800"],
                        "Labels": {"evil\nkey": "value\n\udcff"}, "WorkingDir": "/"}  # fmt: skip
    path = write(
        cli, "names.tar", docker_archive([base_layer, top], "hostile/names:1", config=config)
    )
    ok(cli.run("load", "-i", path))
    for args in (("images",), ("history", "hostile/names:1"), ("history", "--no-trunc", "hostile/names:1"),
                 ("image", "inspect", "hostile/names:1")):  # fmt: skip
        run_binary(cli, *args)
    script = (
        'for f in /new* /bad* /tab* /esc* /dir*; do echo more >> "$f" 2>/dev/null; done; '
        'touch "/made\nhere" "$(printf \'/x\\377y\')"; true'
    )
    ok(cli.run("run", "--name", "names", "hostile/names:1", "sh", "-c", script))
    for args in (("ps", "-a"), ("inspect", "names")):
        run_binary(cli, *args)
    diff = run_binary(cli, "diff", "names")
    assert b"A /made\nhere\n" in diff and b"A /x\xffy\n" in diff and b"C /new\nline\n" in diff
    export = os.path.join(cli.mkdir("export"), "names.tar")
    ok(cli.run("export", "-o", export, "names"))
    with tarfile.open(export, encoding="utf-8", errors="surrogateescape") as tar:
        names = set(tar.getnames())
    assert "new\nline" in names and "made\nhere" in names and "x\udcffy" in names
    ok(cli.run("commit", "names", "hostile/names:2"))
    out = ok(
        cli.run("run", "--rm", "hostile/names:2", "sh", "-c", "cat '/new\nline'; ls / | wc -l")
    )
    assert out.startswith("xmore\n")


# ---------------------------------------------------------------- cp


@pytest.fixture
def cp_container(cli: CLI, base_layer: bytes) -> str:
    top = tar_bytes([
        link("passwd-link", "/etc/passwd"),
        link("up", "../../../../../.."),
        link("etc-link", "/etc"),
        d("dir"),
        f("dir/file", b"inside\n"),
    ])  # fmt: skip
    ok(
        cli.run(
            "load", "-i", write(cli, "cp.tar", docker_archive([base_layer, top], "hostile/cp:1"))
        )
    )
    ok(cli.run("create", "--name", "cpbox", "hostile/cp:1", "true"))
    return "cpbox"


def test_cp_out_of_a_container_with_hostile_symlinks(
    cli: CLI, cp_container: str, outside: str
) -> None:
    host_passwd = read("/etc/passwd")
    dest = cli.mkdir("dest")
    # a symlink is copied as itself, never followed to the host's file
    ok(cli.run("cp", f"{cp_container}:/passwd-link", dest))
    assert os.readlink(os.path.join(dest, "passwd-link")) == "/etc/passwd"
    # following it (trailing /. or a path through it) stays inside the container
    ok(cli.run("cp", f"{cp_container}:/etc-link/passwd", os.path.join(dest, "cpasswd")))
    assert read(os.path.join(dest, "cpasswd")) != host_passwd
    assert b"user:x:1000" in read(os.path.join(dest, "cpasswd"))
    secret = os.path.join(outside, "secret")
    one_line_error(cli.run("cp", f"{cp_container}:/up{secret}", os.path.join(dest, "stolen")))
    assert not os.path.exists(os.path.join(dest, "stolen"))
    # a host destination that is a symlink is replaced, not written through
    os.symlink(secret, os.path.join(dest, "file"))
    ok(cli.run("cp", f"{cp_container}:/dir/file", dest))
    assert not os.path.islink(os.path.join(dest, "file")) and untouched(outside)
    assert read("/etc/passwd") == host_passwd


def test_cp_into_a_container_through_hostile_symlinks(
    cli: CLI, cp_container: str, outside: str
) -> None:
    src_dir = cli.mkdir("src")
    src = os.path.join(src_dir, "payload")
    with open(src, "w") as out:
        out.write("payload\n")
    os.chown(src, cli.uid, cli.gid)
    passwd_before = read("/etc/passwd")
    # into a symlinked directory: the container's /etc, not the host's
    ok(cli.run("cp", src, f"{cp_container}:/etc-link/"))
    ok(cli.run("cp", src, f"{cp_container}:/up/tmp/"))
    # onto a symlink to a file: the link is replaced inside the container
    ok(cli.run("cp", src, f"{cp_container}:/passwd-link"))
    assert read("/etc/passwd") == passwd_before
    assert not os.path.exists("/etc/payload") and not os.path.exists("/tmp/payload")
    proc = cli.run("cp", src, f"{cp_container}:/up{outside}/")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1
    assert untouched(outside)
    diff = ok(cli.run("diff", cp_container)).splitlines()
    assert "A /etc/payload" in diff and "A /tmp/payload" in diff and "C /passwd-link" in diff


def test_cp_out_drops_setuid_bits(cli: CLI, base_layer: bytes) -> None:
    top = tar_bytes(
        [f("suid", b"#!/bin/sh\n", mode=0o4755), f("sgid", b"#!/bin/sh\n", mode=0o2755)]
    )
    ok(
        cli.run(
            "load",
            "-i",
            write(cli, "cpsuid.tar", docker_archive([base_layer, top], "hostile/cpsuid:1")),
        )
    )
    ok(cli.run("create", "--name", "cpsuid", "hostile/cpsuid:1", "true"))
    dest = cli.mkdir("suid-dest")
    for name in ("suid", "sgid"):
        ok(cli.run("cp", f"cpsuid:/{name}", dest))
        mode = os.lstat(os.path.join(dest, name)).st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID), (name, oct(mode))
        assert stat.S_IMODE(mode) == 0o755
