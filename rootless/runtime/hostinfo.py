"""What this host lets the calling user do, with a hint for each missing piece.

Used by `rootless info` and, later, to choose the overlay backend.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from rootless.runtime import hostcheck, idmap


def _check(ok: bool, detail: str, hint: str = "") -> dict[str, object]:
    out: dict[str, object] = {"ok": ok, "detail": detail}
    if not ok and hint:
        out["hint"] = hint
    return out


def userns() -> dict[str, object]:
    from rootless.native import probe

    err = probe.userns()
    if err is None:
        return _check(True, "unprivileged user namespaces work")
    what, hint = hostcheck.explain_userns_failure(err.errno or 0)
    return _check(False, what, hint)


def subids() -> dict[str, object]:
    uid = os.getuid()
    name = idmap._user_name(uid)
    subuid = idmap.read_subid_ranges("/etc/subuid", name, uid)
    subgid = idmap.read_subid_ranges("/etc/subgid", name, uid)
    helpers = {h: idmap.find_helper(h) for h in ("newuidmap", "newgidmap")}
    mapping = idmap.plan()
    detail = {
        "user": name,
        "uid": uid,
        "subuid": [{"start": s, "count": c} for s, c in subuid],
        "subgid": [{"start": s, "count": c} for s, c in subgid],
        "newuidmap": helpers["newuidmap"],
        "newgidmap": helpers["newgidmap"],
        "mapping": mapping.mode,
    }
    ok = mapping.mode in ("root", "full")
    hint = ""
    if not ok:
        if not (subuid and subgid):
            hint = (f"ask an administrator to run: usermod --add-subuids 100000-165535 "
                    f"--add-subgids 100000-165535 {name}  (until then one id is mapped)")
        else:
            hint = "install newuidmap/newgidmap (Debian/Ubuntu: apt install uidmap)"
    out = _check(ok, f"{mapping.mode} id mapping", hint)
    out.update(detail)
    return out


def overlay(base: str) -> dict[str, object]:
    from rootless.native import probe

    try:
        os.makedirs(base, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="probe-", dir=base)
    except OSError as exc:
        return _check(False, f"cannot create a probe directory in {base}: {exc.strerror}")
    try:
        dirs = [os.path.join(tmp, d) for d in ("lower", "upper", "work", "merged")]
        for d in dirs:
            os.mkdir(d)
        err = probe.overlay(dirs[0], dirs[1], dirs[2], dirs[3], extra="userxattr")
        if err is None:
            return _check(True, f"kernel overlayfs mounts in a user namespace with userxattr ({base})")
        return _check(False, f"kernel overlayfs in a user namespace: {err}",
                      "needs Linux >= 5.11 and a filesystem with user xattrs; fuse-overlayfs is the fallback")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fuse_overlayfs() -> dict[str, object]:
    path = shutil.which("fuse-overlayfs") or idmap.find_helper("fuse-overlayfs")
    if path is None:
        return _check(False, "fuse-overlayfs is not installed", "apt install fuse-overlayfs")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return _check(False, f"{path} found, but /dev/fuse is not accessible",
                      "ask an administrator to make /dev/fuse mode 0666 (the distro default)")
    return _check(True, f"{path}, /dev/fuse accessible")


def openat2() -> dict[str, object]:
    from rootless.native import probe

    err = probe.openat2()
    if err is None:
        return _check(True, "openat2(RESOLVE_IN_ROOT) available")
    return _check(False, "openat2 unavailable: a slower user-space path walk is used",
                  "Linux >= 5.6 provides openat2")


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def cgroups() -> dict[str, object]:
    unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    hybrid = os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers")
    mount = "/sys/fs/cgroup" if unified else "/sys/fs/cgroup/unified" if hybrid else None
    version = "v2" if unified else "v1/v2 hybrid" if hybrid else "v1"
    own = _own_cgroup()
    if mount is None or own is None:
        return _check(False, f"cgroups {version}: no cgroup v2 hierarchy for this user",
                      "resource limits (--memory, --cpus, --pids-limit) are ignored with a warning")
    path = os.path.join(mount, own.lstrip("/"))
    try:
        with open(os.path.join(path, "cgroup.controllers")) as f:
            controllers = f.read().split()
    except OSError:
        controllers = []
    writable = os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK)
    delegated = writable and bool(controllers) and version == "v2"
    detail = f"cgroups {version}, own cgroup {own}, controllers: {' '.join(controllers) or 'none'}"
    out = _check(delegated, detail + (", delegated" if delegated else ", not delegated"),
                 "resource limits are ignored with a warning; on systemd hosts enable delegation "
                 "(Delegate=yes in user@.service)")
    out.update({"version": version, "controllers": controllers, "writable": writable})
    return out


def gather(store_root: str) -> dict[str, object]:
    from rootless import __version__
    from rootless.native import CORE_VERSION

    uname = os.uname()
    return {
        "version": __version__,
        "core_version": CORE_VERSION,
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
        "store": store_root,
        "checks": {
            "user_namespaces": userns(),
            "id_mapping": subids(),
            "overlay": overlay(os.path.join(store_root, "tmp")),
            "fuse_overlayfs": fuse_overlayfs(),
            "openat2": openat2(),
            "cgroups": cgroups(),
        },
        "storage_driver": _driver(store_root),
    }


def _driver(root: str) -> str:
    from rootless.runtime.storage import choose

    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        return choose(root)
    except Exception as exc:  # noqa: BLE001 - info reports, it does not fail
        return f"unknown ({exc})"
