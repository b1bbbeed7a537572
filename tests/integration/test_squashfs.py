"""Single-file images: `save --format squashfs` and `run FILE`, as root, sub and nosub.

The image has three layers (busybox; files with other owners, a setuid file and
an opaque directory's first content; then a whiteout and an opaque directory) and
a config with Entrypoint, Cmd, Env, WorkingDir and User. The saved file is read
with `unsquashfs -lln` (owners, modes, whiteouts applied), then run: the output
and exit status follow the config, writes stay in the container (the file's
checksum never changes), two containers share one file, and no squashfuse is
left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
from helpers import require
from helpers.checks import ok, one_line_error
from helpers.images import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Layout,
    TarEntry,
    compress,
    gnu_tar_layer,
    layer_tar,
    push,
)
from helpers.users import CLI, proc_argv

pytestmark = pytest.mark.needs_userns

ENTRYPOINT = ["/bin/sh", "-c", 'echo "$GREETING $(pwd) $(id -un):$(id -g) $*"; exit 3', "sh"]


@pytest.fixture(scope="module")
def sq_image(registry, busybox_rootfs, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The three-layer test image in the registry; its reference."""
    require(shutil.which("sqfstar") is not None, "needs sqfstar (squashfs-tools)")
    require(shutil.which("squashfuse") is not None, "needs squashfuse")
    layout = Layout(tmp_path_factory.mktemp("sq-image"))
    base = gnu_tar_layer(busybox_rootfs)
    middle = layer_tar([
        TarEntry("etc/gone", data=b"deleted above\n"),
        TarEntry("data", kind="dir"),
        TarEntry("data/owned", data=b"owned\n", uid=1000, gid=100, mode=0o640),
        TarEntry("data/private", kind="dir", uid=1000, gid=1000, mode=0o700),
        TarEntry("data/private/note", data=b"note\n", uid=1000, gid=1000, mode=0o600),
        TarEntry("usr/local/bin/suid", data=b"#!/bin/sh\n", mode=0o4755),
        TarEntry("opaque", kind="dir"),
        TarEntry("opaque/old", data=b"old\n"),
    ])
    top = layer_tar([
        TarEntry("etc/.wh.gone"),
        TarEntry("opaque", kind="dir"),
        TarEntry("opaque/.wh..wh..opq"),
        TarEntry("opaque/new", data=b"new\n"),
    ])
    layers = [(base, "gzip"), (middle, "gzip"), (top, "none")]
    descs, diff_ids = [], []
    for tar, kind in layers:
        blob, media_type = compress(tar, kind)
        descs.append({"mediaType": media_type, "digest": layout.put(blob), "size": len(blob)})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {"Entrypoint": ENTRYPOINT, "Cmd": ["default-arg"], "WorkingDir": "/data",
                   "User": "user", "Env": ["PATH=/usr/bin:/bin", "GREETING=hello"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": descs,
        "config": {"mediaType": OCI_CONFIG, "digest": layout.put(config), "size": len(config)},
    }).encode()
    layout.put(manifest)
    layout.tag("latest", manifest)
    ref = registry.ref("test/squashfs")
    push(layout, "latest", ref)
    return ref


def save(cli: CLI, ref: str, name: str = "app.sqfs") -> str:
    ok(cli.run("pull", ref))
    path = os.path.join(cli.workdir, "out", name)
    if not os.path.isdir(os.path.dirname(path)):
        cli.mkdir("out")
    ok(cli.run("save", "--format", "squashfs", "-o", path, ref))
    return path


def listing(path: str) -> dict[str, tuple[str, str]]:
    """unsquashfs -lln: {path: (mode string, "uid/gid")}."""
    out = subprocess.run(["unsquashfs", "-lln", path], check=True, capture_output=True, text=True).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[-1].startswith("squashfs-root"):
            continue
        name = parts[-1] if parts[0][0] != "l" else parts[-3]
        entries[name[len("squashfs-root"):] or "/"] = (parts[0], parts[1])
    return entries


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def squashfuse_pids(cli: CLI) -> list[int]:
    """Live squashfuse processes mounting below this test's store (a zombie has no
    command line: its parent has yet to reap it, it is gone)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = proc_argv(int(entry))
        if argv and os.path.basename(argv[0]).startswith(b"squashfuse") and any(
                cli.store.encode() in a for a in argv):
            pids.append(int(entry))
    return pids


def no_squashfuse_left(cli: CLI, timeout: float = 10) -> bool:
    """A daemon ends when its container's mounts go away, which the kernel finishes
    right after the container's last process: allow it a moment."""
    deadline = time.monotonic() + timeout
    while squashfuse_pids(cli):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_save_squashfs_has_the_images_owners_modes_and_whiteouts(cli, sq_image):
    path = save(cli, sq_image)
    files = listing(path)
    assert files["/bin/busybox"] == ("-rwxr-xr-x", "0/0")
    assert files["/etc"] == ("drwxr-xr-x", "0/0")
    assert files["/"][1] == "0/0"
    assert files["/data/owned"] == ("-rw-r-----", "1000/100")
    assert files["/data/private"] == ("drwx------", "1000/1000")
    assert files["/data/private/note"] == ("-rw-------", "1000/1000")
    assert files["/usr/local/bin/suid"] == ("-rwsr-xr-x", "0/0")
    assert "/etc/gone" not in files  # the whiteout was applied
    assert "/opaque/old" not in files and "/opaque/new" in files  # the opaque directory too
    assert not any(".wh." in name for name in files)
    assert files["/.rootless/config.json"] == ("-rw-r--r--", "0/0")
    shown = subprocess.run(["unsquashfs", "-cat", path, ".rootless/config.json"],
                           capture_output=True, text=True, check=False)
    if shown.returncode == 0:  # -cat is newer than some squashfs-tools
        assert json.loads(shown.stdout)["config"]["Entrypoint"] == ENTRYPOINT


def test_run_from_the_file_follows_the_image_config(cli, sq_image):
    path = save(cli, sq_image)
    proc = cli.run("run", "--rm", path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "hello /data user:1000 default-arg\n"
    proc = cli.run("run", "--rm", "-e", "GREETING=hi", "-w", "/", "./out/app.sqfs", "given")
    assert (proc.returncode, proc.stdout) == (3, "hi / user:1000 given\n")
    proc = cli.run("run", "--rm", "--entrypoint", "cat", "--user", "0", path, "/opaque/new", "/data/owned")
    assert ok(proc) == "new\nowned\n"
    proc = cli.run("run", "--rm", "--entrypoint", "sh", path, "-c", "ls /data/private; ls /etc/gone")
    assert proc.returncode == 1 and proc.stdout == "note\n"
    assert ok(cli.run("ps", "-aq")) == ""
    assert no_squashfuse_left(cli)


def test_writes_stay_in_the_container(cli, sq_image):
    path = save(cli, sq_image)
    before = sha256(path)
    script = ("if [ -e /marker ]; then echo again; else echo first; fi; touch /marker; "
              "echo changed > /etc/motd; rm /opaque/new; mkdir -p /new/dir; touch /data/private/x")
    proc = cli.run("run", "--name", "w", "--user", "0", "--entrypoint", "sh", path, "-c", script)
    assert ok(proc) == "first\n"
    other = cli.run("run", "--rm", "--user", "0", "--entrypoint", "sh", path, "-c",
                    "cat /opaque/new; ls /marker /etc/motd /new /data/private/x 2>&1 | wc -l")
    assert ok(other) == "new\n4\n"  # four "No such file" lines: none of w's changes
    # w keeps its changes across a restart
    ok(cli.run("start", "w"))
    assert ok(cli.run("wait", "w")).strip() == "0"
    assert ok(cli.run("logs", "w")) == "first\nagain\n"
    ok(cli.run("rm", "w"))
    assert sha256(path) == before
    assert no_squashfuse_left(cli)


def test_two_containers_share_one_file(cli, sq_image):
    path = save(cli, sq_image)
    script = "echo $0 > /tag; sleep 1; cat /tag"
    procs = [cli.popen("run", "--rm", "--user", "0", "--entrypoint", "sh", path, "-c", script, name,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("first", "second")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0] for o in outs] == ["first\n", "second\n"]
    assert no_squashfuse_left(cli)


def test_detached_container_from_a_file(cli, sq_image):
    path = save(cli, sq_image)
    cid = ok(cli.run("run", "-d", "--name", "bg", "--entrypoint", "sleep", path, "30")).strip()
    assert len(cid) == 64
    out = ok(cli.run("ps", "--format", "{{.Names}} {{.Image}}"))
    assert out == f"bg {path}\n"
    assert ok(cli.run("exec", "bg", "cat", "/opaque/new")) == "new\n"
    assert squashfuse_pids(cli) != []  # the lower layer of the running container
    ok(cli.run("rm", "-f", "bg"))
    assert no_squashfuse_left(cli)


def test_bad_image_files(cli, sq_image):
    path = save(cli, sq_image)
    with open(path, "rb") as f:
        data = f.read()
    bad = {
        "text.sqfs": b"not a squashfs image at all\n" * 10,
        "short.sqfs": data[: len(data) // 2],
        "cut-metadata.sqfs": data[:-40],
    }
    for name, content in bad.items():
        with open(os.path.join(cli.workdir, "out", name), "wb") as f:
            f.write(content)
    one_line_error(cli.run("run", "--rm", "./out/text.sqfs", "true"), "not a squashfs image")
    one_line_error(cli.run("run", "--rm", "./out/short.sqfs", "true"), "truncated")
    one_line_error(cli.run("run", "--rm", "./out/cut-metadata.sqfs", "true"), "damaged")
    one_line_error(cli.run("run", "--rm", "./missing.sqfs", "true"), "No such file")
    one_line_error(cli.run("create", "/nonexistent/app.squashfs", "true"), "No such file")
    one_line_error(cli.run("run", "--rm", "/etc/hostname", "true"), "not a squashfs image")
    one_line_error(cli.run("save", "--format", "squashfs", sq_image), "-o FILE")
    one_line_error(cli.run("save", "--format", "squashfs", "-o", "out/x.sqfs", sq_image, sq_image), "exactly one")
    one_line_error(cli.run("save", "--format", "squashfs", "-o", "out/x.sqfs", "no/such:image"), "no such image")
    assert not os.path.exists(os.path.join(cli.workdir, "out", "x.sqfs"))
    assert ok(cli.run("ps", "-aq")) == ""
    assert no_squashfuse_left(cli)


@pytest.mark.needs_fuse
def test_fuse_overlayfs_above_the_file(cli, sq_image):
    path = save(cli, sq_image)
    before = sha256(path)
    proc = cli.run("--storage-driver", "fuse-overlayfs", "run", "--rm", "--entrypoint", "sh", path,
                   "-c", "cat /data/private/note; echo x > /data/private/new; cat /data/private/new; id -u")
    assert ok(proc) == "note\nx\n1000\n"  # as the image's User (exec by a non-root id works)
    assert sha256(path) == before
    assert no_squashfuse_left(cli)


def test_plain_squashfs_without_metadata(cli, busybox_rootfs):
    out = cli.mkdir("plain")
    path = os.path.join(out, "rootfs.squashfs")
    subprocess.run(["mksquashfs", busybox_rootfs, path, "-all-root", "-quiet", "-no-progress"],
                   check=True, capture_output=True)
    assert ok(cli.run("run", "--rm", path, "sh", "-c", "id -u; pwd")) == "0\n/\n"
    one_line_error(cli.run("run", "--rm", path), "no command")


def test_metadata_reader(tmp_path):
    """overlay.squashfs.read_metadata on hand-made files (no container involved)."""
    import struct

    from rootless.overlay.squashfs import SquashfsError, read_metadata

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("x\n")
    plain = tmp_path / "plain.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(plain), "-quiet", "-no-progress"], check=True,
                   capture_output=True)
    fs = plain.read_bytes()
    assert read_metadata(str(plain)).config == {}

    def with_trailer(obj: dict[str, object]) -> str:
        data = json.dumps(obj).encode()
        path = tmp_path / "t.sqfs"
        path.write_bytes(fs + b"\n" + data + struct.pack("<Q", len(data)) + b"RLSQMETA")
        return str(path)

    meta = read_metadata(with_trailer({"version": 1, "config": {"config": {"Cmd": ["x"]}},
                                       "etc": {"passwd": "root:x:0:0::/root:/bin/sh\n"}}))
    assert meta.config == {"config": {"Cmd": ["x"]}} and meta.etc["passwd"].startswith("root:")
    with pytest.raises(SquashfsError, match="newer rootless"):
        read_metadata(with_trailer({"version": 99}))
    damaged = tmp_path / "damaged.sqfs"
    damaged.write_bytes(fs + b"junk after the filesystem")
    with pytest.raises(SquashfsError, match="damaged"):
        read_metadata(str(damaged))
    short = tmp_path / "short.sqfs"
    short.write_bytes(fs[:200])
    with pytest.raises(SquashfsError, match="truncated"):
        read_metadata(str(short))
    bad = tmp_path / "bad.sqfs"
    bad.write_bytes(b"hsqs" + b"\0" * 200)
    with pytest.raises(SquashfsError, match="squashfs 4.0"):
        read_metadata(str(bad))
    with pytest.raises(SquashfsError, match="No such file"):
        read_metadata(str(tmp_path / "missing.sqfs"))
