"""images, tag, rmi, history, image inspect/prune, login/logout through the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from helpers import Registry, has_peer, require
from helpers.images import push
from helpers.users import CLI
from images_fixtures import Built, build_all


@pytest.fixture(scope="module")
def built(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Built:
    require(has_peer("skopeo"), "needs skopeo")
    return build_all(str(tmp_path_factory.mktemp("images")), registry.host)


def ok(cli: CLI, *args: str) -> str:
    proc = cli.run(*args, timeout=120)
    assert proc.returncode == 0, (args, proc.stderr)
    return str(proc.stdout)


def fails(cli: CLI, *args: str) -> str:
    proc = cli.run(*args, timeout=120)
    assert proc.returncode == 125, (args, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("rootless: ") and "Traceback" not in proc.stderr
    return str(proc.stderr)


def test_images_listing_and_formats(cli: CLI, built: Built) -> None:
    assert ok(cli, "images").split("\n")[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    ok(cli, "pull", "-q", built.ref("small"))
    ok(cli, "pull", "-q", built.ref("zstd"))
    ok(cli, "tag", built.ref("small"), "mine/app:2")
    lines = ok(cli, "images").strip().split("\n")
    assert len(lines) == 4
    row = next(line.split() for line in lines if line.startswith("mine/app"))
    assert row[:3] == ["mine/app", "2", built.small.id[7:19]]
    assert ok(cli, "images", "-q").split() == [built.small.id[7:19], built.zstd.id[7:19]] or \
        sorted(ok(cli, "images", "-q").split()) == sorted([built.small.id[7:19], built.zstd.id[7:19]])
    templ = ok(cli, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert f"mine/app:2 {built.small.id[7:19]}" in templ.split("\n")
    data = json.loads(ok(cli, "images", "--format", "json", "--no-trunc"))
    assert {d["ID"] for d in data} == {built.small.id, built.zstd.id}
    digests = ok(cli, "images", "--digests")
    assert built.small.digest in digests
    assert ok(cli, "images", "-a", "mine/app").count("\n") == 2


def test_inspect_and_history(cli: CLI, built: Built) -> None:
    ok(cli, "pull", "-q", built.ref("rich"))
    (obj,) = json.loads(ok(cli, "image", "inspect", built.ref("rich")))
    assert obj["Id"] == built.rich.id
    assert obj["RepoTags"] == [built.ref("rich")]
    assert obj["RootFS"] == {"Type": "layers", "Layers": built.rich.diff_ids}
    assert obj["Os"] == "linux" and obj["Architecture"] == "amd64"
    assert obj["Config"]["Cmd"] == ["/usr/bin/su"] and obj["Size"] > 70000
    assert ok(cli, "image", "inspect", "--format", "{{.Id}}", built.rich.id[7:15]).strip() == built.rich.id
    hist = ok(cli, "history", built.ref("rich")).strip().split("\n")
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and len(hist) == 4
    assert hist[1].startswith(built.rich.id[7:19]) and "<missing>" in hist[3]
    assert ok(cli, "image", "history", "-q", built.ref("rich")).split()[0] == built.rich.id[7:19]
    assert "no such image: nothere" in fails(cli, "image", "inspect", "nothere")


def test_rmi_semantics(cli: CLI, built: Built) -> None:
    ok(cli, "pull", "-q", built.ref("small"))
    ok(cli, "tag", built.ref("small"), "other:1")
    assert ok(cli, "rmi", "other:1").strip() == "Untagged: other:1"
    ok(cli, "tag", built.ref("small"), "other:1")
    assert "must be forced" in fails(cli, "rmi", built.small.id[7:19])
    # a container of the image (the runtime writes containers/<id>/config.json)
    cdir = os.path.join(cli.store, "containers", "abc123")
    os.makedirs(cdir)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump({"id": "abc123", "name": "web", "image_id": built.small.id}, f)
    err = fails(cli, "rmi", "other:1", built.ref("small"))
    assert "used by container abc123" in err and err.count("\n") == 1  # other:1 was only untagged
    os.unlink(os.path.join(cdir, "config.json"))
    out = ok(cli, "rmi", built.ref("small"))
    assert out.strip().split("\n") == [f"Untagged: {built.ref('small')}", f"Deleted: {built.small.id}"]
    layers = os.path.join(cli.store, "layers")
    assert sorted(os.listdir(layers)) == ["l"] and os.listdir(os.path.join(layers, "l")) == []
    assert os.listdir(os.path.join(cli.store, "blobs", "sha256")) == []
    assert "no such image" in fails(cli, "rmi", "ghost")


def test_rmi_force_keeps_layers_of_containers_and_prune(cli: CLI, built: Built) -> None:
    ok(cli, "pull", "-q", built.ref("zstd"))
    cdir = os.path.join(cli.store, "containers", "c1")
    os.makedirs(cdir)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump({"id": "c1", "name": "x", "image_id": built.zstd.id}, f)
    assert ok(cli, "rmi", "-f", built.ref("zstd")).strip() == f"Untagged: {built.ref('zstd')}"
    layers = [n for n in os.listdir(os.path.join(cli.store, "layers")) if n != "l"]
    assert len(layers) == 2, "a container keeps its image's layers"
    os.unlink(os.path.join(cdir, "config.json"))
    out = ok(cli, "image", "prune")
    assert "Total reclaimed space:" in out
    assert [n for n in os.listdir(os.path.join(cli.store, "layers")) if n != "l"] == []
    ok(cli, "pull", "-q", built.ref("small"))
    assert "deleted: " + built.small.id in ok(cli, "image", "prune", "-a", "-f")
    assert ok(cli, "images", "-q") == ""


def test_store_is_readable_by_skopeo_and_umoci(cli_factory: object, built: Built, tmp_path: object) -> None:
    cli = cli_factory("root")  # type: ignore[operator]
    ok(cli, "pull", "-q", built.ref("rich"))
    from helpers.images import skopeo

    info = json.loads(skopeo("inspect", f"oci:{cli.store}:{built.ref('rich')}"))
    assert info["Digest"] == built.rich.digest
    if has_peer("umoci"):
        import subprocess

        dest = os.path.join(str(tmp_path), "bundle")
        subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{cli.store}:{built.ref('rich')}", dest],
                       check=True, capture_output=True)  # fmt: skip
        assert os.path.exists(os.path.join(dest, "rootfs", "usr/bin/su"))


def test_login_logout(cli: CLI, registry_auth: Registry, built: Built) -> None:
    ref = f"{registry_auth.host}/private/small:v1"
    push(built.layout, "small", ref, f"--dest-creds={registry_auth.username}:{registry_auth.password}")
    env = {"XDG_RUNTIME_DIR": cli.mkdir("authrun")}
    assert "authentication required" in cli.run("pull", "--tls-verify=false", ref, env=env).stderr
    proc = cli.run("login", "--tls-verify=false", "-u", str(registry_auth.username), "-p", "wrong",
                   registry_auth.host, env=env)  # fmt: skip
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and "failed" in proc.stderr
    proc = cli.run("login", "--tls-verify=false", "-u", str(registry_auth.username), "--password-stdin",
                   registry_auth.host, input=f"{registry_auth.password}\n", env=env)  # fmt: skip
    assert proc.returncode == 0 and "Login Succeeded" in proc.stdout, proc.stderr
    auth = os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json")
    assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
    assert registry_auth.host in json.loads(Path(auth).read_text())["auths"]
    assert cli.run("pull", "-q", "--tls-verify=false", ref, env=env).returncode == 0
    assert cli.run("logout", registry_auth.host, env=env).returncode == 0
    assert registry_auth.host not in json.loads(Path(auth).read_text())["auths"]
    assert "not logged in" in cli.run("logout", registry_auth.host, env=env).stderr
