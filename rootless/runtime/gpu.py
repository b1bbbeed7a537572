"""GPUs and devices: `--gpus all|N|device=I,J`, `--device /dev/X[:/dev/Y][:rwm]`, CDI.

Imported only when one of these options is used. Pure planning: the result is a list
of mount ops and environment entries that `runner.prepare` adds to the container.

NVIDIA without any NVIDIA tool installed (what libnvidia-container does, in Python):
  * device nodes: /dev/nvidiaN (the selected GPUs), /dev/nvidiactl, /dev/nvidia-uvm,
    /dev/nvidia-uvm-tools, /dev/nvidia-modeset and /dev/nvidia-caps/* when present;
  * the driver's user-space libraries, found through the ldconfig cache (`ldconfig -p`),
    plus their DT_NEEDED closure (read with pyelftools, resolved through the same cache,
    glibc and the C++ runtime excluded: the image brings its own);
  * its binaries (nvidia-smi, ...).
Inside, libraries and binaries sit in a tmpfs at /usr/local/nvidia/{lib64,bin} (nothing
is written into the image), which is where NVIDIA's CUDA images already look; the
runtime also appends those folders to LD_LIBRARY_PATH and PATH.

CDI (Container Device Interface) spec files in /etc/cdi and /var/run/cdi (JSON only:
write them with `nvidia-ctk cdi generate --format=json`) are honoured: `--device
vendor.com/class=NAME|all`, and `--gpus` uses an `nvidia.com/gpu` spec when one exists.
CDI hooks are not run; `update-ldcache` is replaced by LD_LIBRARY_PATH entries and
`create-symlinks` by symlinks in the mount table.

Test and site overrides (environment):
  ROOTLESS_LDCONFIG_CACHE  the ld.so cache to read (default: the system's)
  ROOTLESS_NVIDIA_ROOT     a driver tree: binaries are looked up in ROOT/bin, ROOT/usr/bin
  ROOTLESS_NVIDIA_DEV      the folder holding the nvidia device nodes (default /dev)
  ROOTLESS_CDI_DIRS        colon-separated CDI spec folders (default /etc/cdi:/var/run/cdi)
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

from rootless import log
from rootless.errors import ContainerError, UsageError
from rootless.native.spawn import (
    MF_FILE,
    MF_RDONLY,
    MF_RECURSIVE,
    OP_BIND,
    OP_MOUNT,
    OP_SYMLINK,
    MountOp,
)

NV_DIR = "/usr/local/nvidia"
NV_LIB = NV_DIR + "/lib64"
NV_BIN = NV_DIR + "/bin"
MS_NOSUID, MS_NODEV = 2, 4
IS_64BIT = sys.maxsize > 2**32

# Sonames of the driver's user-space libraries (libnvidia-container's list, by prefix).
DRIVER_LIBS = (
    "libnvidia-ml.so",
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",
    "libnvidia-opencl.so",
    "libnvidia-gpucomp.so",
    "libnvidia-allocator.so",
    "libnvidia-cfg.so",
    "libnvidia-nscq.so",
    "libnvidia-fatbinaryloader.so",
    "libnvidia-compiler.so",
    "libnvidia-encode.so",
    "libnvidia-opticalflow.so",
    "libnvcuvid.so",
    "libnvidia-eglcore.so",
    "libnvidia-glcore.so",
    "libnvidia-tls.so",
    "libnvidia-glsi.so",
    "libnvidia-fbc.so",
    "libnvidia-rtcore.so",
    "libnvoptix.so",
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
    "libnvidia-glvkspirv.so",
    "libnvidia-pkcs11.so",
    "libnvidia-pkcs11-openssl3.so",
)
DRIVER_BINS = (
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
)
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
# Never bound from the host: the image's own C library and C++ runtime must be used.
SYSTEM_LIBS = re.compile(
    r"^(ld-linux.*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libnsl|libanl|"
    r"libstdc\+\+|libgcc_s|libmvec|libcrypt)\.so(\.|$)"
)
CDI_NAME = re.compile(r"^([a-z0-9][a-z0-9.-]*/[a-zA-Z0-9][a-zA-Z0-9._-]*)=(.+)$")


class Plan:
    """What the devices and GPUs add to a container."""

    def __init__(self) -> None:
        self.ops: list[MountOp] = []
        self.env: list[str] = []  # KEY=VALUE; for PATH and LD_LIBRARY_PATH: appended
        self.lib_dirs: list[str] = []
        self._targets: set[str] = set()
        self._nv_tmpfs = False

    def bind(self, source: str, target: str, readonly: bool = False) -> None:
        if target in self._targets:
            return
        self._targets.add(target)
        is_dir = os.path.isdir(source)
        flags = (MF_RECURSIVE if is_dir else MF_FILE) | (MF_RDONLY if readonly else 0)
        self.ops.append(MountOp(OP_BIND, target, source, mflags=flags))

    def symlink(self, target: str, link: str) -> None:
        if link not in self._targets:
            self._targets.add(link)
            self.ops.append(MountOp(OP_SYMLINK, link, target))

    def nv_tmpfs(self) -> None:
        if not self._nv_tmpfs:
            self._nv_tmpfs = True
            self.ops.append(
                MountOp(
                    OP_MOUNT,
                    NV_DIR,
                    "tmpfs",
                    "tmpfs",
                    "mode=755,size=1m",
                    flags=MS_NOSUID | MS_NODEV,
                )
            )

    def add_lib_dir(self, d: str) -> None:
        if d not in self.lib_dirs:
            self.lib_dirs.append(d)


def plan(gpus: str | None, devices: list[str]) -> Plan:
    """Resolve --gpus and --device into mount ops and environment entries."""
    p = Plan()
    for spec in devices:
        if CDI_NAME.match(spec):
            apply_cdi(p, spec)
        else:
            add_device(p, spec)
    if gpus:
        add_gpus(p, gpus)
    if p.lib_dirs:
        p.env.append("LD_LIBRARY_PATH=" + ":".join(p.lib_dirs))
    return p


def merge_env(env: list[str], extra: list[str]) -> list[str]:
    """Add `extra` to `env`: PATH and LD_LIBRARY_PATH are appended to, others replaced."""
    index = {e.partition("=")[0]: i for i, e in enumerate(env)}
    out = list(env)
    for item in extra:
        key, _, value = item.partition("=")
        i = index.get(key)
        if i is None:
            index[key] = len(out)
            out.append(item)
        elif key in ("PATH", "LD_LIBRARY_PATH"):
            old = out[i].partition("=")[2]
            parts = [x for x in old.split(":") if x]
            parts += [x for x in value.split(":") if x and x not in parts]
            out[i] = f"{key}={':'.join(parts)}"
        else:
            out[i] = item
    return out


# ---------------------------------------------------------------- --device


def parse_device(spec: str) -> tuple[str, str, str]:
    """`/dev/X[:/dev/Y][:rwm]` -> (host path, container path, permissions)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UsageError(f"invalid device {spec!r}: expected /dev/X[:/dev/Y][:rwm]")
    host, target, perms = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if parts[1].startswith("/"):
            target = parts[1]
        else:
            perms = parts[1]
    elif len(parts) == 3:
        target, perms = parts[1], parts[2]
    if not host.startswith("/") or not target.startswith("/"):
        raise UsageError(f"invalid device {spec!r}: paths must be absolute")
    if not perms or not set(perms) <= set("rwm"):
        raise UsageError(f"invalid device permissions {perms!r} in {spec!r}: use a mix of r, w, m")
    return host, target, perms


def add_device(p: Plan, spec: str) -> None:
    host, target, perms = parse_device(spec)
    try:
        st = os.stat(host)
    except OSError as exc:
        raise ContainerError(f"device {host} does not exist: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        # docker: every device node under the folder
        for name in sorted(os.listdir(host)):
            path = os.path.join(host, name)
            if _is_device(path):
                p.bind(path, os.path.join(target, name), readonly="w" not in perms)
        return
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ContainerError(f"{host} is not a device node", hint="bind files with -v instead")
    # No device cgroup without root: the node's own permissions decide access.
    p.bind(host, target, readonly="w" not in perms)


def _is_device(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


# ---------------------------------------------------------------- --gpus


def parse_gpus(value: str) -> list[int] | None:
    """'all' -> None; 'N' -> [0..N-1]; 'device=0,1' -> [0, 1] (docker's syntax)."""
    v = value.strip().strip("\"'")
    for item in v.split(","):
        if item.startswith(("capabilities=", "driver=")):
            v = ",".join(x for x in v.split(",") if x != item)
    if v in ("all", "device=all", "-1"):
        return None
    if v.isdigit():
        n = int(v)
        if n < 1:
            raise UsageError(f"invalid --gpus {value!r}: the count must be at least 1")
        return list(range(n))
    if v.startswith("device="):
        ids = v[len("device=") :].split(",")
        if ids and all(i.strip().isdigit() for i in ids):
            return [int(i) for i in ids]
        raise UsageError(
            f"invalid --gpus {value!r}: give device indices, e.g. device=0,1",
            hint="GPU UUIDs are not supported; see `nvidia-smi -L` for indices",
        )
    raise UsageError(f"invalid --gpus {value!r}: expected all, a count, or device=0,1")


def dev_dir() -> str:
    return os.environ.get("ROOTLESS_NVIDIA_DEV") or "/dev"


def gpu_nodes() -> dict[int, str]:
    """Index -> host path of every /dev/nvidiaN."""
    d = dev_dir()
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    found = {}
    for name in names:
        m = re.fullmatch(r"nvidia(\d+)", name)
        if m and _is_device(os.path.join(d, name)):
            found[int(m.group(1))] = os.path.join(d, name)
    return dict(sorted(found.items()))


def add_gpus(p: Plan, value: str) -> None:
    wanted = parse_gpus(value)
    specs = load_cdi_specs()
    if any(s.get("kind") == "nvidia.com/gpu" for s in specs):
        names = ["all"] if wanted is None else [str(i) for i in wanted]
        for name in names:
            apply_cdi(p, f"nvidia.com/gpu={name}", specs)
        return
    nodes = gpu_nodes()
    if not nodes:
        raise ContainerError(
            f"--gpus: no NVIDIA GPU found (no {dev_dir()}/nvidia0...)",
            hint="is the NVIDIA driver loaded? `nvidia-smi` on the host should list GPUs",
        )
    if wanted is None:
        chosen = list(nodes)
    elif value.strip().strip("\"'").isdigit():
        if len(wanted) > len(nodes):
            raise ContainerError(f"--gpus {value}: only {len(nodes)} GPU(s) on this host")
        chosen = list(nodes)[: len(wanted)]
    else:
        missing = [i for i in wanted if i not in nodes]
        if missing:
            raise ContainerError(
                f"--gpus {value}: no GPU {missing[0]} on this host "
                f"(have {', '.join(map(str, nodes))})"
            )
        chosen = wanted
    d = dev_dir()
    for i in chosen:
        p.bind(nodes[i], f"/dev/nvidia{i}")
    for name in CONTROL_NODES:
        if _is_device(os.path.join(d, name)):
            p.bind(os.path.join(d, name), "/dev/" + name)
    caps = os.path.join(d, "nvidia-caps")
    if os.path.isdir(caps):
        for name in sorted(os.listdir(caps)):
            if _is_device(os.path.join(caps, name)):
                p.bind(os.path.join(caps, name), "/dev/nvidia-caps/" + name)
    add_driver(p)
    p.env.append("NVIDIA_VISIBLE_DEVICES=" + ",".join(map(str, chosen)))


def add_driver(p: Plan) -> None:
    """Bind the driver's libraries (with their DT_NEEDED closure) and binaries."""
    cache = ldconfig_cache()
    libs = driver_libraries(cache)
    if not libs:
        raise ContainerError(
            "--gpus: the NVIDIA driver libraries are not in the ldconfig cache",
            hint="install the driver's user-space part (libnvidia-ml.so.1, libcuda.so.1)",
        )
    p.nv_tmpfs()
    by_real: dict[str, str] = {}
    for name, path in libs:
        real = os.path.realpath(path)
        if real in by_real:
            p.symlink(by_real[real], f"{NV_LIB}/{name}")
            continue
        by_real[real] = name
        p.bind(real, f"{NV_LIB}/{name}", readonly=True)
    p.add_lib_dir(NV_LIB)
    bins = driver_binaries()
    for path in bins:
        p.bind(os.path.realpath(path), f"{NV_BIN}/{os.path.basename(path)}", readonly=True)
    if bins:
        p.env.append("PATH=" + NV_BIN)
    sock = "/run/nvidia-persistenced/socket"
    if os.path.exists(sock):
        p.bind(sock, sock)
    log.debug(f"gpus: {len(by_real)} driver libraries, {len(bins)} binaries")


def ldconfig_cache() -> dict[str, str]:
    """soname -> path of the 64-bit entries of the ld.so cache (`ldconfig -p`)."""
    argv = ["ldconfig", "-p"]
    alt = os.environ.get("ROOTLESS_LDCONFIG_CACHE")
    if alt:
        argv = ["ldconfig", "-C", alt, "-p"]
    env = dict(os.environ, PATH="/usr/sbin:/sbin:/usr/bin:/bin", LC_ALL="C")
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ContainerError(f"--gpus: cannot read the ldconfig cache: {exc}") from exc
    entries: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"^\s+(\S+) \(([^)]*)\) => (\S+)$", line)
        # a 64-bit host: only 64-bit entries ("x86-64", "AArch64", "64bit")
        if m and ("64" in m.group(2) or not IS_64BIT):
            entries.setdefault(m.group(1), m.group(3))
    return entries


def driver_libraries(cache: dict[str, str]) -> list[tuple[str, str]]:
    """(name, path) of the driver libraries and their DT_NEEDED closure."""
    todo = [(n, pth) for n, pth in cache.items() if n.startswith(DRIVER_LIBS)]
    seen = {n for n, _ in todo}
    out: list[tuple[str, str]] = []
    while todo:
        name, path = todo.pop(0)
        out.append((name, path))
        for dep in needed(path):
            if dep in seen or SYSTEM_LIBS.match(dep):
                continue
            seen.add(dep)
            dep_path = cache.get(dep)
            if dep_path is None:
                log.debug(f"gpus: {name} needs {dep}, which is not in the ldconfig cache")
                continue
            todo.append((dep, dep_path))
    return out


def needed(path: str) -> list[str]:
    """The DT_NEEDED entries of an ELF shared object ([] when it is not one)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    return [
                        str(getattr(t, "needed", "")) for t in section.iter_tags()
                        if t.entry.d_tag == "DT_NEEDED"  # pyelftools sets .needed on these
                    ]
    except (OSError, ELFError) as exc:
        log.debug(f"gpus: cannot read {path}: {exc}")
    return []


def driver_binaries() -> list[str]:
    root = os.environ.get("ROOTLESS_NVIDIA_ROOT")
    if root:
        dirs = [os.path.join(root, "bin"), os.path.join(root, "usr", "bin")]
    else:
        dirs = os.environ.get("PATH", "").split(":") + ["/usr/bin", "/usr/sbin", "/bin"]
    found: dict[str, str] = {}
    for name in DRIVER_BINS:
        for d in dirs:
            path = os.path.join(d, name)
            if d and name not in found and os.access(path, os.X_OK) and os.path.isfile(path):
                found[name] = path
    return list(found.values())


# ---------------------------------------------------------------- CDI


def cdi_dirs() -> list[str]:
    env = os.environ.get("ROOTLESS_CDI_DIRS")
    if env is not None:
        return [d for d in env.split(":") if d]
    return ["/etc/cdi", "/var/run/cdi"]


def load_cdi_specs() -> list[dict[str, object]]:
    """Every JSON CDI spec in the CDI folders (later folders override earlier ones)."""
    specs: list[dict[str, object]] = []
    for d in cdi_dirs():
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            if name.endswith((".yaml", ".yml")):
                log.debug(
                    f"cdi: {path}: YAML specs are not read; write JSON "
                    "(nvidia-ctk cdi generate --format=json)"
                )
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    spec = json.load(f)
            except (OSError, ValueError) as exc:
                raise ContainerError(f"invalid CDI spec {path}: {exc}") from exc
            if isinstance(spec, dict) and isinstance(spec.get("kind"), str):
                spec["_path"] = path
                specs.append(spec)
    return specs


def apply_cdi(p: Plan, qualified: str, specs: list[dict[str, object]] | None = None) -> None:
    """Apply the CDI device `vendor.com/class=name` (or `=all`)."""
    m = CDI_NAME.match(qualified)
    if not m:
        raise UsageError(f"invalid CDI device name {qualified!r}: expected vendor.com/class=name")
    kind, name = m.group(1), m.group(2)
    specs = load_cdi_specs() if specs is None else specs
    matching = [s for s in specs if s.get("kind") == kind]
    if not matching:
        raise ContainerError(
            f"CDI: no spec for {kind} in {', '.join(cdi_dirs()) or '(no folders)'}",
            hint="generate one, e.g. `nvidia-ctk cdi generate --format=json`",
        )
    applied = False
    for spec in matching:
        devices = spec.get("devices")
        for dev in devices if isinstance(devices, list) else []:
            if isinstance(dev, dict) and (name == "all" or dev.get("name") == name):
                _apply_edits(p, dev.get("containerEdits"), str(spec["_path"]))
                applied = True
        if applied:
            _apply_edits(p, spec.get("containerEdits"), str(spec["_path"]))
            break
    if not applied:
        raise ContainerError(f"CDI: unknown device {qualified}")


def _apply_edits(p: Plan, edits: object, where: str) -> None:
    if not isinstance(edits, dict):
        return
    for e in edits.get("env") or []:
        if isinstance(e, str) and "=" in e:
            p.env.append(e)
    for node in edits.get("deviceNodes") or []:
        if not isinstance(node, dict) or not isinstance(node.get("path"), str):
            raise ContainerError(f"invalid CDI spec {where}: a device node without a path")
        host = str(node.get("hostPath") or node["path"])
        if not _is_device(host):
            raise ContainerError(f"CDI device node {host} does not exist ({where})")
        perms = str(node.get("permissions") or "rwm")
        p.bind(host, str(node["path"]), readonly="w" not in perms)
    for mnt in edits.get("mounts") or []:
        if not isinstance(mnt, dict) or not mnt.get("hostPath") or not mnt.get("containerPath"):
            raise ContainerError(
                f"invalid CDI spec {where}: a mount needs hostPath and containerPath"
            )
        host, target = str(mnt["hostPath"]), str(mnt["containerPath"])
        if not os.path.exists(host):
            raise ContainerError(f"CDI mount source {host} does not exist ({where})")
        options = mnt.get("options") or []
        p.bind(host, target, readonly="ro" in options)
        if ".so" in os.path.basename(target):
            p.add_lib_dir(os.path.dirname(target))
    for hook in edits.get("hooks") or []:
        if not isinstance(hook, dict):
            continue
        args = [str(a) for a in hook.get("args") or []]
        if "create-symlinks" in args:
            for i, a in enumerate(args):
                if a == "--link" and i + 1 < len(args) and "::" in args[i + 1]:
                    target, link = args[i + 1].split("::", 1)
                    p.symlink(target, link)
        elif "update-ldcache" in args:
            for i, a in enumerate(args):
                if a == "--folder" and i + 1 < len(args):
                    p.add_lib_dir(args[i + 1])
        else:
            log.debug(f"cdi: hook {' '.join(args) or hook.get('path')} is not run ({where})")
