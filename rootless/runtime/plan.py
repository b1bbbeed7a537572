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
KEY_VERSION = b"rootless-plan 2"
ENV_PREFIX = b"ROOTLESS_PLAN"
OUT_ENV = "ROOTLESS_PLAN_OUT"
# Plans kept per user: a plan is 5-10 KB in the runroot (often a tmpfs); when there
# are more, the oldest written go (each command line with its own arguments has one).
MAX_PLANS = 256


class Request:
    """Where the launcher wants this invocation's plan, the key it looked for, what a
    shape key needs, and the environment as it came (its hash, for plans that read
    all of it)."""

    __slots__ = ("path", "key", "args", "shape_keys", "env_hash")

    def __init__(self, path: str, key: bytes, args: list[str] | None = None,
                 shape_keys: dict[int, bytes] | None = None, env_hash: int = 0) -> None:
        self.path = path
        self.key = key
        self.args = args or []
        self.shape_keys = shape_keys or {}
        self.env_hash = env_hash


def key_material(args: list[str], shape: int | None = None) -> bytes:
    """The bytes the launcher builds in build_key (csrc/launcher/main.c): user,
    directory and the arguments (only the first `shape` of them for a shape key,
    whose plan stands for any command after them). The environment is not in the
    key: the plan lists the variables the run read (RecordingEnviron)."""
    count = b"%d" % len(args) if shape is None else b"%d+" % shape
    parts = [KEY_VERSION, b"%d:%d" % (os.getuid(), os.getgid()), os.getcwdb(), count]
    parts += [os.fsencode(a) for a in (args if shape is None else args[:shape])]
    return b"".join(p + b"\0" for p in parts)


def environment_hash() -> int:
    """FNV-1a of the environment as the launcher sees it (main.c env_hash)."""
    return fnv1a64(b"".join(k + b"=" + v + b"\0" for k, v in os.environb.items()
                            if not k.startswith(ENV_PREFIX)))


class RecordingEnviron(os._Environ[str]):
    """os.environ that remembers which variables the run read, and their values
    (None: absent), so that the plan depends on exactly those. Iterating it (e.g.
    --env-host, -e 'SLURM_*') makes the plan depend on the whole environment.
    Variables the CLI set itself (from its arguments, which are in the key) are not
    recorded."""

    reads: dict[str, str | None] = {}
    whole = False
    written: set[str] = set()
    paused = 0  # > 0 while the run does what a planned run never does (a pull)

    def __getitem__(self, key: str) -> str:
        try:
            value: str = super().__getitem__(key)
        except KeyError:
            self._note(key, None)
            raise
        self._note(key, value)
        return value

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def _note(self, key: str, value: str | None) -> None:
        if key not in RecordingEnviron.written and not key.startswith("ROOTLESS_PLAN") \
                and not RecordingEnviron.paused:
            RecordingEnviron.reads.setdefault(key, value)

    def __iter__(self):  # type: ignore[no-untyped-def]
        if not RecordingEnviron.paused:
            RecordingEnviron.whole = True
        return super().__iter__()

    def __len__(self) -> int:
        if not RecordingEnviron.paused:
            RecordingEnviron.whole = True
        return int(super().__len__())

    def __setitem__(self, key: str, value: str) -> None:
        RecordingEnviron.written.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        RecordingEnviron.written.add(key)
        super().__delitem__(key)


def fnv1a64(data: bytes) -> int:
    """The plan file's name (main.c); the file holds the whole key against collisions."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def take_request(args: list[str]) -> Request | None:
    """Called first thing by the launcher's Python entry: consume $ROOTLESS_PLAN_OUT
    (so that no container and no child process sees it) and fix the key now, before
    any option changes the environment."""
    path = os.environ.pop(OUT_ENV, None)
    if not path:
        return None
    try:
        shapes = {k: key_material(args, k) for k in range(1, len(args))}
        request = Request(path, key_material(args), args, shapes, environment_hash())
    except OSError:  # the current directory is gone
        return None
    os.environ.__class__ = RecordingEnviron  # from here on, what the run reads is recorded
    return request


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

    def records(self, tail: int = 0) -> bytes:
        """`tail`: a shape plan, whose last `tail` arguments come from each run (they
        go between the J and j parts of config.json)."""
        from rootless.runtime import names
        from rootless.runtime.jsonlite import dumps

        c = self.c
        config = {k: v for k, v in c.config.items() if k not in ("id", "name", "created")}
        parts: list[bytes] = []
        if tail:
            run = dict(config["run"])  # type: ignore[call-overload]
            run["argv"] = list(run["argv"])[:-tail] + [TAIL_SENTINEL]
            config["run"] = run
            before, sentinel, after = dumps(config).partition(dumps(TAIL_SENTINEL))
            assert sentinel and after.endswith("}")
            parts = [_rec(b"J", _s(before)), _rec(b"j", _s(after[:-1]))]
        else:
            text = dumps(config)
            assert text.endswith("}") and len(text) > 2
            parts = [_rec(b"J", _s(text[:-1]))]
        out = [_rec(b"T", _s(c.id)), _rec(b"D", _s(c.store.root_dir)), _rec(b"d", _s(c.store.run_dir)),
               _rec(b"L", _s(os.path.join(os.path.dirname(c.store.root_dir), "store.lock"))),
               *parts, _rec(b"a", _s(" ".join(names.ADJECTIVES))),
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


TAIL_SENTINEL = "\0rootless-command\0"


def encode(key: bytes, cfg: SpawnConfig, mapping: IdMapping, interactive: bool,
           stamps: list[str], helpers: tuple[str, str] | None,
           container: ContainerPlan | None = None, tail: int = 0, dash_is_option: bool = False,
           env_hash: int = 0) -> bytes:
    """The plan file. `tail`: a shape plan, for any command of `tail` or more words
    (cfg.argv ends with this run's); `dash_is_option`: a first word with a dash would
    have been parsed as an option (the --rootfs form)."""
    from rootless._version import __version__

    out = [MAGIC, _rec(b"V", _s(__version__)), _rec(b"K", key), _rec(b"N", _s(os.uname().nodename))]
    if RecordingEnviron.whole:
        out.append(_rec(b"Y", _q(env_hash - (1 << 64) if env_hash >= (1 << 63) else env_hash)))
    else:  # (with the whole environment's hash, each variable is implied)
        for name, value in sorted(RecordingEnviron.reads.items()):
            out.append(_rec(b"e", _s(name if value is None else f"{name}={value}")))
    out += [_rec(b"S", _stamp(p)) for p in stamps]
    out.append(_rec(b"F", _q(cfg.sflags, 1 if interactive else 0)))
    out += [_rec(b"R", _s(cfg.rootfs)), _rec(b"C", _s(cfg.cwd)), _rec(b"H", _s(cfg.hostname))]
    out += [_rec(b"A", _s(a)) for a in (cfg.argv[:-tail] if tail else cfg.argv)]
    if tail:
        out.append(_rec(b"X", _q(1 if dash_is_option else 0)))
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
        out.append(container.records(tail))
    out.append(_rec(b"Z"))
    return b"".join(out)


def shape_of(request: Request, argv: list[str], command: list[str]) -> int:
    """How many leading arguments a shape plan for this run would be keyed on, or 0
    when there is none: the container's command must be the last words of both the
    command line and the process's argv (not the image's Cmd)."""
    n = len(command)
    k = len(request.args) - n
    if n == 0 or k < 1 or request.args[k:] != command or argv[-n:] != command:
        return 0
    return k if k in request.shape_keys else 0


def shape_path(request: Request, k: int) -> str:
    return os.path.join(os.path.dirname(request.path), "%016x" % fnv1a64(request.shape_keys[k]))


def write(request: Request, data: bytes, path: str | None = None) -> None:
    """Write the plan atomically, private to this user; a failure only costs speed."""
    from rootless.paths import ensure_private_dir
    from rootless.store.locking import atomic_write

    path = path or request.path
    plans = os.path.dirname(path)
    try:
        ensure_private_dir(os.path.dirname(plans))
        ensure_private_dir(plans)
        atomic_write(path, data, 0o600, sync=False)  # its temporary file goes on failure
        _trim(plans)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        log.debug(f"cannot write the run plan {path}: {exc}")


def _trim(plans: str) -> None:
    """Delete the oldest plans beyond MAX_PLANS, once there are an eighth more (so
    that the deletions come in batches, not one with every new plan)."""
    names = os.listdir(plans)
    if len(names) <= MAX_PLANS + MAX_PLANS // 8:
        return
    aged = []
    for name in names:
        try:
            aged.append((os.stat(os.path.join(plans, name)).st_mtime_ns, name))
        except OSError:
            continue
    aged.sort()
    for _, name in aged[: len(aged) - MAX_PLANS]:
        try:
            os.unlink(os.path.join(plans, name))
        except OSError:
            pass
