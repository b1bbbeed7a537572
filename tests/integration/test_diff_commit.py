"""diff, commit, cp and export, as every identity (root, sub, nosub).

The image: the busybox rootfs plus a layer with known content (an opaque-able
directory, a directory to delete, a 0700 directory of uid 1000 that only a
namespace with the full mapping can read on the host).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
from helpers.images import Layout, TarEntry, gnu_tar_layer, layer_tar, push

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="session")
def image(registry, busybox_rootfs, tmp_path_factory):
    layout = Layout(tmp_path_factory.mktemp("diff-image"))
    base = gnu_tar_layer(busybox_rootfs)
    top = layer_tar([
        TarEntry("etc/motd", data=b"layer two\n"),
        TarEntry("keep", kind="dir"),
        TarEntry("keep/f", data=b"f\n"),
        TarEntry("keep/g", data=b"g\n"),
        TarEntry("del", kind="dir"),
        TarEntry("del/x", data=b"x\n"),
        TarEntry("opq", kind="dir"),
        TarEntry("opq/a", data=b"a\n"),
        TarEntry("opq/b", data=b"b\n"),
        TarEntry("opq/sub", kind="dir"),
        TarEntry("opq/sub/c", data=b"c\n"),
        TarEntry("app", kind="dir", mode=0o700, uid=1000, gid=1000),
        TarEntry("app/data", data=b"secret\n", mode=0o600, uid=1000, gid=1000),
    ])  # fmt: skip
    img = layout.image([(base, "gzip"), (top, "gzip")], cmd=["/bin/sh"])
    layout.tag("latest", img.manifest)
    ref = registry.ref("test/diff-busybox")
    push(layout, "latest", ref)
    return ref


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


CHANGES = (
    "echo new > /added; echo more >> /etc/motd; rm /keep/f; rm -rf /del; "
    "rm -rf /opq && mkdir /opq && echo A > /opq/a; "
    "mkdir -p /newdir/sub && touch /newdir/sub/f; echo n > /app/new"
)
EXPECTED_DIFF = [
    "A /added",
    "C /app",
    "A /app/new",
    "D /del",
    "C /etc",
    "C /etc/motd",
    "C /keep",
    "D /keep/f",
    "A /newdir",
    "A /newdir/sub",
    "A /newdir/sub/f",
    "C /opq",
    "C /opq/a",
    "D /opq/b",
    "D /opq/sub",
]


def test_diff_known_changes(cli, image):
    ok(cli.run("run", "--name", "d", image, "sh", "-c", CHANGES))
    assert ok(cli.run("diff", "d")).splitlines() == EXPECTED_DIFF
    assert ok(cli.run("container", "diff", "d")).splitlines() == EXPECTED_DIFF


def test_diff_fresh_and_errors(cli, image):
    ok(cli.run("create", "--name", "fresh", image, "true"))
    assert ok(cli.run("diff", "fresh")) == ""
    proc = cli.run("diff", "nope")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and "no such container" in proc.stderr


# ---------------------------------------------------------------- commit

ROUND_TRIP = (
    CHANGES + "; echo s > /suid && chmod 4755 /suid; echo g > /sgid && chmod 2710 /sgid; "
    "ln -s /etc/motd /link; ln -s ../../../.. /uplink; echo h > /hard1 && ln /hard1 /hard2; "
    "mkfifo /fifo; chmod 700 /newdir; touch -d '2001-02-03 04:05:06' /newdir/sub/f; {chown}"
)
PATHS = ("/added /etc/motd /keep /keep/f /keep/g /del /del/x /opq /opq/a /opq/b /opq/sub /opq/sub/c "
         "/newdir /newdir/sub/f /app /app/data /app/new /suid /sgid /link /uplink /hard1 /hard2 /fifo /owned")
LISTING = (
    f"for p in {PATHS}; do stat -c '%n %u:%g %a %F %h %s %Y' $p 2>&1 || true; done; "
    "readlink /link /uplink; [ /hard1 -ef /hard2 ] && echo hardlinked; cat /etc/motd /opq/a"
)


def _chown(cli):
    # users with subordinate ids (and root) can give files to other ids inside
    return "echo o > /owned && chown 1000:100 /owned" if cli.has_subids else "echo o > /owned"


def _listing_of_committed(cli, image_ref):
    return ok(cli.run("run", "--rm", image_ref, "sh", "-c", LISTING))


def test_commit_round_trip(cli, image):
    script = ROUND_TRIP.format(chown=_chown(cli)) + "; " + LISTING
    before = ok(cli.run("run", "--name", "src", image, "sh", "-c", script))
    assert "hardlinked" in before and "layer two\nmore\nA\n" in before
    if cli.has_subids:
        assert "/owned 1000:100 644" in before
    image_id = ok(cli.run("commit", "-m", "my message", "-a", "Jane <j@x>", "src", "committed:v1")).strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert "committed" in ok(cli.run("images"))
    after = _listing_of_committed(cli, "committed:v1")
    if not cli.has_subids:
        # a user without subordinate ids keeps special bits only in override_stat
        # (kernel overlay shows the on-disk mode, as for any pulled image)
        before = before.replace(" 4755 ", " 755 ").replace(" 2710 ", " 710 ")
    assert after.splitlines() == before.splitlines()
    members = _last_layer(cli, "docker.io/library/committed:v1")
    assert members["suid"].mode == 0o4755 and members["sgid"].mode == 0o2710
    assert members["hard2"].islnk() and members["hard2"].linkname == "hard1"
    assert members["uplink"].issym() and members["uplink"].linkname == "../../../.."
    assert ".wh.del" in members and "keep/.wh.f" in members and "opq/.wh..wh..opq" in members
    assert "etc/hostname" not in members and "etc/hosts" not in members
    owned = members["owned"]
    assert (owned.uid, owned.gid) == ((1000, 100) if cli.has_subids else (0, 0))
    assert (members["app"].uid, members["app"].mode) == (1000, 0o700)
    # the new image's container starts with no changes of its own
    ok(cli.run("create", "--name", "child", "committed:v1", "true"))
    assert ok(cli.run("diff", "child")) == ""
    hist = ok(cli.run("history", "--no-trunc", "committed:v1"))
    assert "my message" in hist
    data = json.loads(ok(cli.run("image", "inspect", "committed:v1")))[0]
    assert data["Author"] == "Jane <j@x>"
    assert len(data["RootFS"]["Layers"]) == 3


def _last_layer(cli, name):
    """name -> TarInfo of the newest layer of image `name`, read from the store's OCI layout."""
    def blob(digest):
        return os.path.join(cli.store, "blobs", "sha256", digest.split(":", 1)[1])

    index = json.load(open(os.path.join(cli.store, "index.json")))
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name)
    manifest = json.load(open(blob(entry["digest"])))
    assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with tarfile.open(blob(manifest["layers"][-1]["digest"]), "r:gz") as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_commit_changes_and_no_name(cli, image):
    ok(cli.run("run", "--name", "cc", image, "sh", "-c", "echo hi > /greeting"))
    image_id = ok(cli.run("commit", "-c", 'CMD ["cat", "/greeting"]', "-c", "ENV A=1",
                          "--change=WORKDIR /etc", "cc")).strip()
    assert ok(cli.run("run", "--rm", image_id)) == "hi\n"
    assert ok(cli.run("run", "--rm", image_id, "sh", "-c", "echo $A; pwd")) == "1\n/etc\n"
    assert "<none>" in ok(cli.run("images"))
    proc = cli.run("commit", "-c", "FROB x", "cc")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and "FROB" in proc.stderr


def test_commit_running_container(cli, image):
    ok(cli.run("run", "-d", "--name", "live", image, "sh", "-c",
               "echo live > /state; rm /etc/motd; touch /ready; sleep 60"))
    deadline = __import__("time").monotonic() + 20
    while "A /ready" not in cli.run("diff", "live").stdout:
        assert __import__("time").monotonic() < deadline, "container never got ready"
        __import__("time").sleep(0.05)
    ok(cli.run("commit", "live", "live-snap"))
    assert "Up" in ok(cli.run("ps", "--format", "{{.Status}}"))
    out = ok(cli.run("run", "--rm", "live-snap", "sh", "-c", "cat /state; ls /etc/motd 2>&1 || true"))
    assert out.startswith("live\n") and "No such file" in out
    ok(cli.run("rm", "-f", "live"))


def test_commit_peers_read_the_image(cli, image, registry, tmp_path):
    import shutil

    if not shutil.which("skopeo"):
        pytest.skip("skopeo missing")
    ok(cli.run("run", "--name", "p", image, "sh", "-c", "echo peer > /peer"))
    ok(cli.run("commit", "p", "peer:v1"))
    layout = f"oci:{cli.store}:docker.io/library/peer:v1"
    info = json.loads(subprocess.run(["skopeo", "inspect", layout], capture_output=True, text=True,
                                     check=True).stdout)
    assert len(info["Layers"]) == 3
    dest = registry.ref(f"test/committed-{cli.name}")
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", layout, f"docker://{dest}"],
                   capture_output=True, text=True, check=True)
    assert ok(cli.run("run", "--rm", "--pull=always", dest, "cat", "/peer")) == "peer\n"


# ---------------------------------------------------------------- export


def test_export_equals_merged_view(cli, image):
    from pathlib import Path

    tmp_path = Path(cli.mkdir("export"))
    ok(cli.run("run", "--name", "ex", image, "sh", "-c", CHANGES))
    out = tmp_path / "ex.tar"
    ok(cli.run("export", "-o", str(out), "ex"))
    with tarfile.open(out) as tar:
        names = {m.name.rstrip("/") for m in tar.getmembers()}
        motd = tar.extractfile("etc/motd").read()
        data = tar.getmember("app/data")
    assert motd == b"layer two\nmore\n"
    for gone in ("del", "del/x", "keep/f", "opq/b", "opq/sub", "etc/hostname"):
        assert gone not in names, gone
    for present in ("added", "keep/g", "opq/a", "newdir/sub/f", "app/new", "bin/busybox", "etc/passwd"):
        assert present in names, present
    assert not any(n.split("/")[-1].startswith(".wh.") for n in names)
    assert (data.uid, data.gid, data.mode) == (1000, 1000, 0o600)
    # tar -t agrees (GNU tar reads it), and so does the container's own find
    tar_t = subprocess.run(["tar", "-tf", str(out)], capture_output=True, text=True, check=True).stdout
    assert {n.rstrip("/") for n in tar_t.split()} == names
    script = CHANGES + "; find / -xdev | sed 's|^/||' | grep -v -e '^$' -e '^proc' -e '^sys' -e '^dev'"
    found = set(ok(cli.run("run", "--rm", image, "sh", "-c", script)).split())
    etc_mounts = {"etc/hosts", "etc/hostname", "etc/resolv.conf"}
    assert names - etc_mounts - {"proc", "sys", "dev"} == found - etc_mounts
    # stdout, and a clear error on a terminal-less bad container
    raw = cli.run("export", "ex", input=b"").stdout
    assert raw[:512] and len(raw) == out.stat().st_size
    proc = cli.run("export", "nope")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1
