"""`rootless info` and the host-feature error paths."""

from __future__ import annotations

import json
import shlex

import pytest

pytestmark = pytest.mark.needs_userns


def test_info_json(cli):
    proc = cli.run("info", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    checks = info["checks"]
    assert set(checks) == {"user_namespaces", "id_mapping", "overlay", "fuse_overlayfs", "openat2", "cgroups"}
    assert checks["user_namespaces"]["ok"] is True
    assert checks["openat2"]["ok"] is True
    mapping = checks["id_mapping"]
    assert mapping["mapping"] == {"root": "root", "sub": "full", "nosub": "single"}[cli.name]
    if cli.name == "sub":
        assert mapping["subuid"] and mapping["subgid"]
    if cli.name == "nosub":
        assert mapping["ok"] is False and "usermod --add-subuids" in mapping["hint"]
    assert checks["overlay"]["ok"] is True  # kernel 6.x: overlay with userxattr in a userns
    for c in checks.values():
        assert c["ok"] or c.get("hint"), c  # every missing piece comes with a hint


def test_info_text_and_template(cli):
    proc = cli.run("info")
    assert proc.returncode == 0, proc.stderr
    for label in ("User namespaces", "ID mapping", "Overlay (kernel)", "fuse-overlayfs", "openat2", "Cgroups"):
        assert label in proc.stdout
    proc = cli.run("info", "--format", "{{.checks.user_namespaces.ok}}")
    assert proc.stdout == "true\n"
    proc = cli.run("info", "--format", "{{.nope}}")
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and "no field" in proc.stderr


def test_info_lists_shared_stores(cli):
    shared = cli.mkdir("shared-store")
    proc = cli.run("--storage-opt", f"additionalimagestore={shared}", "info")
    assert proc.returncode == 0, proc.stderr
    assert f"Shared:   {shared} (read-only)" in proc.stdout
    proc = cli.run("info", "--format", "json", env={"ROOTLESS_IMAGE_STORES": shared})
    assert json.loads(proc.stdout)["shared_stores"] == [shared]


def test_userns_disabled_names_the_setting(cli, busybox_rootfs):
    # user.max_user_namespaces is per user namespace: set it to 0 in a private one.
    inner = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {shlex.join([cli.bin, 'run', '--rootfs', busybox_rootfs, 'true'])}"
    argv = cli.prefix() + ["unshare", "--user", "--map-root-user", "sh", "-c", inner]
    import subprocess

    proc = subprocess.run(argv, env=cli.environ(), capture_output=True, text=True, timeout=60, cwd=cli.workdir)
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "user.max_user_namespaces is 0" in lines[0], proc.stderr
    assert "sysctl" in lines[0]
