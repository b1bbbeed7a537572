"""Run plans: what the native `rootless` command needs to repeat a `run --rm`
without starting Python (csrc/launcher/).

When the launcher finds no valid plan for a `run --rm` command line, it runs the
Python CLI with $ROOTLESS_PLAN_OUT naming the plan file. If the run is one a plan
can stand for (`plannable`), the Python CLI writes, once the command has started,
everything the C core was given (rootfs, mount table, argv, environment, ids, id
maps, flags), the exact key it is valid for (user, directory, command line,
environment), and stamps of the files its resolution read (the rootfs's
/etc/passwd and /etc/group, /etc/subuid, env files, volume sources, the installed
package). The launcher checks all of it before using the plan; any difference
makes it run the Python CLI again, which rewrites the plan.

The file format is described in csrc/launcher/plan.c.
"""

from __future__ import annotations

import os
import struct

from rootless import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rootless.native.spawn import SpawnConfig
    from rootless.runtime.containers import Container
    from rootless.runtime.idmap import IdMapping

MAGIC = b"RLPLAN1\n"
KEY_VERSION = b"rootless-plan 1"
ENV_PREFIX = b"ROOTLESS_PLAN"
OUT_ENV = "ROOTLESS_PLAN_OUT"


class Request:
    """Where the launcher wants this invocation's plan, and the key it looked for."""

    __slots__ = ("path", "key")

    def __init__(self, path: str, key: bytes) -> None:
        self.path = path
        self.key = key


def key_material(args: list[str]) -> bytes:
    """The bytes the launcher builds in build_key (csrc/launcher/main.c)."""
    parts = [KEY_VERSION, b"%d:%d" % (os.getuid(), os.getgid()), os.getcwdb(), b"%d" % len(args)]
    parts += [os.fsencode(a) for a in args]
    parts += [k + b"=" + v for k, v in os.environb.items() if not k.startswith(ENV_PREFIX)]
    return b"".join(p + b"\0" for p in parts)


def take_request(args: list[str]) -> Request | None:
    """Called first thing by the launcher's Python entry: consume $ROOTLESS_PLAN_OUT
    (so that no container and no child process sees it) and fix the key now, before
    any option changes the environment."""
    path = os.environ.pop(OUT_ENV, None)
    if not path:
        return None
    try:
        return Request(path, key_material(args))
    except OSError:  # the current directory is gone
        return None


def _rec(tag: bytes, payload: bytes = b"") -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload


def _s(text: str) -> bytes:
    return os.fsencode(text) + b"\0"


def _q(*values: int) -> bytes:
    return struct.pack("<%dq" % len(values), *values)


def _opt(text: str | None) -> bytes:
    return b"\0" if text is None else b"\1" + _s(text)


IDENTITY = "="  # a stamp path with this prefix: only which file it is counts, not its content


def _stamp(path: str) -> bytes:
    """A file read to make the plan: it must be the same, unchanged, later. With the
    IDENTITY prefix (a directory bound or used as a root: its content may change)
    only that it is the same file of the same type."""
    kind, path = (2, path[1:]) if path.startswith(IDENTITY) else (1, path)
    try:
        st = os.stat(path)
    except OSError:
        return _q(0, 0, 0, 0, 0, 0, 0) + _s(path)
    if kind == 2:
        return _q(2, st.st_dev, st.st_ino, st.st_mode, 0, 0, 0) + _s(path)
    return _q(1, st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns) + _s(path)


def package_files() -> list[str]:
    """The installed files whose change must retire every plan."""
    import rootless
    from rootless import _native

    top = os.path.dirname(rootless.__file__)
    files = [os.path.join(top, rel) for rel in (
        "_version.py", "runtime/plan.py", "runtime/runner.py", "runtime/mounts.py",
        "runtime/users.py", "runtime/idmap.py", "cli/commands/run.py")]
    return files + [str(_native.__file__)]


class ContainerPlan:
    """What the launcher needs to make and remove the container record of a
    `run --rm IMAGE` (csrc/launcher/container.c) like the Python CLI does."""

    def __init__(self, c: Container, fixed_name: str | None) -> None:
        self.c = c
        self.fixed_name = fixed_name

    def stamps(self) -> list[str]:
        """The image index (tags), the shared stores and their configuration, and the
        image's layers."""
        from rootless.store import shared

        config = self.c.config
        root = os.path.dirname(self.c.store.root_dir)
        layers_dir = str(config["layers_dir"])
        lower = config["lower"]
        assert isinstance(lower, list)
        return [os.path.join(root, "index.json"),
                *(os.path.join(s, "index.json") for s in shared.image_stores()),
                *shared.config_files(),
                *(IDENTITY + os.path.join(layers_dir, str(link)) for link in lower)]

    def records(self) -> bytes:
        from rootless.runtime import names
        from rootless.runtime.jsonlite import dumps

        c = self.c
        config = dumps({k: v for k, v in c.config.items() if k not in ("id", "name", "created")})
        assert config.endswith("}") and len(config) > 2
        out = [_rec(b"T", _s(c.id)), _rec(b"D", _s(c.store.root_dir)), _rec(b"d", _s(c.store.run_dir)),
               _rec(b"L", _s(os.path.join(os.path.dirname(c.store.root_dir), "store.lock"))),
               _rec(b"J", _s(config[:-1])), _rec(b"a", _s(" ".join(names.ADJECTIVES))),
               _rec(b"s", _s(" ".join(names.SURNAMES)))]
        if self.fixed_name is not None:
            out.append(_rec(b"n", _s(self.fixed_name)))
        for name in ("hosts", "hostname", "resolv.conf"):
            try:
                with open(c.run_path(name), "rb") as f:  # copies, when the container has its own
                    out.append(_rec(b"W", _s(name) + f.read().replace(b"\0", b"") + b"\0"))
            except FileNotFoundError:
                pass
        return b"".join(out)


def encode(key: bytes, cfg: SpawnConfig, mapping: IdMapping, interactive: bool,
           stamps: list[str], helpers: tuple[str, str] | None,
           container: ContainerPlan | None = None) -> bytes:
    from rootless._version import __version__

    out = [MAGIC, _rec(b"V", _s(__version__)), _rec(b"K", key), _rec(b"N", _s(os.uname().nodename))]
    out += [_rec(b"S", _stamp(p)) for p in stamps]
    out.append(_rec(b"F", _q(cfg.sflags, 1 if interactive else 0)))
    out += [_rec(b"R", _s(cfg.rootfs)), _rec(b"C", _s(cfg.cwd)), _rec(b"H", _s(cfg.hostname))]
    out += [_rec(b"A", _s(a)) for a in cfg.argv]
    out += [_rec(b"E", _s(e)) for e in cfg.env]
    out.append(_rec(b"U", _q(cfg.uid, cfg.gid)))
    out += [_rec(b"G", _q(g)) for g in cfg.groups]
    for m in cfg.mounts:
        out.append(_rec(b"M", _q(m.op, m.mflags, m.flags, m.mode)
                        + _opt(m.source) + _opt(m.target) + _opt(m.fstype) + _opt(m.data)))
    out.append(_rec(b"I", _q(1 if helpers else 0, 0 if mapping.setgroups else 1)))
    out += [_rec(b"u", _q(*m)) for m in mapping.uid_map]
    out += [_rec(b"g", _q(*m)) for m in mapping.gid_map]
    if helpers:
        out += [_rec(b"P", _s(helpers[0])), _rec(b"Q", _s(helpers[1]))]
    if container is not None:
        out.append(container.records())
    out.append(_rec(b"Z"))
    return b"".join(out)


def write(request: Request, data: bytes) -> None:
    """Write the plan atomically, private to this user; a failure only costs speed."""
    from rootless.paths import ensure_private_dir

    plans = os.path.dirname(request.path)
    tmp = f"{request.path}.{os.getpid()}.tmp"
    try:
        ensure_private_dir(os.path.dirname(plans))
        ensure_private_dir(plans)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, request.path)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        log.debug(f"cannot write the run plan {request.path}: {exc}")
        try:
            os.unlink(tmp)
        except OSError:
            pass
