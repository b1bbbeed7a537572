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
from helpers.checks import ok
from helpers.images import Layout, TarEntry, layer_tar, pristine_busybox_layer, push

pytestmark = pytest.mark.needs_userns


@pytest.fixture(scope="session")
def image(registry, tmp_path_factory):
    layout = Layout(tmp_path_factory.mktemp("diff-image"))
    base = pristine_busybox_layer(tmp_path_factory.mktemp("diff-rootfs"))
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


def _json(path):
    with open(path) as f:
        return json.load(f)


def _read(path):
    with open(path) as f:
        return f.read()


def _last_layer(cli, name):
    """name -> TarInfo of the newest layer of image `name`, read from the store's OCI layout."""
    def blob(digest):
        return os.path.join(cli.store, "blobs", "sha256", digest.split(":", 1)[1])

    index = _json(os.path.join(cli.store, "index.json"))
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name)
    manifest = _json(blob(entry["digest"]))
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


# ---------------------------------------------------------------- cp

SHOW = "for p in /in.txt /indir/a /indir/sub/b /tmp/deep /evilout; do cat $p 2>/dev/null || echo no $p; done"


def _host_tree(cli):
    d = cli.mkdir("host")
    with open(os.path.join(d, "in.txt"), "w") as f:
        f.write("from host\n")
    os.makedirs(os.path.join(d, "indir", "sub"))
    for rel, text in (("indir/a", "a\n"), ("indir/sub/b", "b\n")):
        with open(os.path.join(d, rel), "w") as f:
            f.write(text)
    os.chmod(os.path.join(d, "indir", "a"), 0o751)
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            os.chown(os.path.join(root, n), cli.uid, cli.gid)
    return d


def test_cp_both_directions(cli, image):
    host = _host_tree(cli)
    ok(cli.run("run", "--name", "cp1", image, "sh", "-c", CHANGES))
    # out: a file into an existing dir, a dir to a new name, a dir's content
    ok(cli.run("cp", "cp1:/etc/motd", host + "/"))
    assert _read(os.path.join(host, "motd")) == "layer two\nmore\n"
    ok(cli.run("cp", "cp1:/keep", os.path.join(host, "kept")))
    assert sorted(os.listdir(os.path.join(host, "kept"))) == ["g"]
    os.mkdir(os.path.join(host, "content"))
    os.chown(os.path.join(host, "content"), cli.uid, cli.gid)
    ok(cli.run("cp", "cp1:/opq/.", os.path.join(host, "content")))
    assert os.listdir(os.path.join(host, "content")) == ["a"]
    ok(cli.run("cp", "cp1:/app/data", host))  # a 0700 dir of uid 1000 inside
    assert _read(os.path.join(host, "data")) == "secret\n"
    st = os.stat(os.path.join(host, "data"))
    assert st.st_uid == cli.uid  # copied out: the caller's
    # in: a file, a directory; then the container sees them
    ok(cli.run("cp", os.path.join(host, "in.txt"), "cp1:/"))
    ok(cli.run("cp", os.path.join(host, "indir"), "cp1:/indir"))
    ok(cli.run("create", "--name", "cp2", image, "sh", "-c", SHOW))
    ok(cli.run("cp", os.path.join(host, "in.txt"), "cp2:/in.txt"))
    out = ok(cli.run("start", "-a", "cp2"))
    assert out.startswith("from host\nno /indir/a\n")
    diff = ok(cli.run("diff", "cp1")).splitlines()
    assert {"A /in.txt", "A /indir", "A /indir/a", "A /indir/sub/b"} <= set(diff)
    members = {m.name: m for m in _export_members(cli, "cp1")}
    assert members["indir/a"].mode == 0o751 and (members["indir/a"].uid, members["indir/a"].gid) == (0, 0)
    # errors: one line, exit 125
    for args in (("cp1:/nope", host), (os.path.join(host, "indir"), "cp1:/etc/motd"),
                 ("cp1:/etc/motd", os.path.join(host, "missing") + "/")):
        proc = cli.run("cp", *args)
        assert proc.returncode == 125 and proc.stderr.count("\n") == 1, (args, proc.stderr)


def _export_members(cli, name):
    d = cli.mkdir(f"exp-{name}")
    ok(cli.run("export", "-o", os.path.join(d, "x.tar"), name))
    with tarfile.open(os.path.join(d, "x.tar")) as tar:
        return tar.getmembers()


def test_cp_symlinks_never_leave_the_container(cli, image):
    host = _host_tree(cli)
    secret = os.path.join(host, "in.txt")  # exists on the host, not in the container
    # the container's links: to /, up and out, and a dir link
    setup = "ln -s / /evil; ln -s ../../../.. /up; mkdir /d && ln -s /tmp /d/t"
    ok(cli.run("run", "--name", "ev2", image, "sh", "-c", setup + "; " + SHOW))
    for src in (f"ev2:/evil{secret}", f"ev2:/up{secret}", f"ev2:/d/t/../../..{secret}"):
        proc = cli.run("cp", src, os.path.join(host, "stolen"))
        assert proc.returncode == 125, src
        assert not os.path.exists(os.path.join(host, "stolen"))
    # writes through links land inside the container
    ok(cli.run("cp", secret, "ev2:/up/tmp/deep"))
    ok(cli.run("cp", secret, "ev2:/d/t/../../evilout"))
    proc = cli.run("cp", secret, f"ev2:/evil{host}/pwned")
    assert proc.returncode == 125
    assert not os.path.exists(os.path.join(host, "pwned"))
    assert not os.path.exists("/evilout") and not os.path.exists("/tmp/deep")
    diff = ok(cli.run("diff", "ev2")).splitlines()
    assert "A /tmp/deep" in diff and "A /evilout" in diff
    # a symlink is copied as itself
    ok(cli.run("cp", "ev2:/evil", os.path.join(host, "link")))
    assert os.readlink(os.path.join(host, "link")) == "/"


def test_cp_into_running_container(cli, image):
    host = _host_tree(cli)
    ok(cli.run("run", "-d", "--name", "run1", image, "sh", "-c",
               "while [ ! -f /in.txt ]; do sleep 0.05; done; cat /in.txt"))
    ok(cli.run("cp", os.path.join(host, "in.txt"), "run1:/in.txt"))
    assert ok(cli.run("wait", "run1")).strip() == "0"
    assert ok(cli.run("logs", "run1")) == "from host\n"
    ok(cli.run("run", "-d", "--name", "run2", image, "sh", "-c", "echo made > /made; sleep 60"))
    deadline = __import__("time").monotonic() + 20
    while cli.run("cp", "run2:/made", os.path.join(host, "made")).returncode != 0:
        assert __import__("time").monotonic() < deadline
        __import__("time").sleep(0.05)
    assert _read(os.path.join(host, "made")) == "made\n"
    ok(cli.run("rm", "-f", "run2"))


def test_fakeroot_chown_reaches_the_committed_layer(cli, image):
    """--fakeroot under the monitor: chown is emulated, recorded, and committed."""
    import tarfile

    ok(cli.run("run", "--fakeroot", "--name", "fr", image, "sh", "-c",
               "mkdir /owned && touch /owned/f && chown -R 1000:100 /owned"))
    ok(cli.run("commit", "fr", "fakeroot/owned"))
    archive = os.path.join(cli.mkdir("save"), "owned.tar")
    ok(cli.run("save", "-o", archive, "fakeroot/owned"))
    owners = {}
    with tarfile.open(archive) as outer:
        for m in outer:
            if m.name.endswith(".tar") or "/blobs/" in m.name or m.name.startswith("blobs/"):
                f = outer.extractfile(m)
                if f is None:
                    continue
                try:
                    with tarfile.open(fileobj=f, mode="r:*") as layer:
                        for e in layer:
                            owners[e.name.lstrip("./").rstrip("/")] = (e.uid, e.gid)
                except tarfile.TarError:
                    continue
    assert owners.get("owned") == (1000, 100) and owners.get("owned/f") == (1000, 100), owners
    ok(cli.run("rm", "fr"))
