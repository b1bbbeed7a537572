"""Pure pieces of the builder: image config edits for the metadata instructions,
healthcheck and duration parsing, docker's `created_by` texts, predefined args.
"""

from __future__ import annotations

import copy
import json
import platform as _platform
import posixpath
import re
import time

from rootless.build.dockerfile import DockerfileError, Instruction, json_list, words

Config = dict[str, object]
DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)


def host_arch() -> str:
    m = _platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def platform_args(target: str | None) -> dict[str, str]:
    """BuildKit's automatic platform args (usable after `ARG TARGETARCH` etc.)."""
    build = f"linux/{host_arch()}"
    tgt = target or build
    parts = tgt.split("/")
    return {
        "BUILDPLATFORM": build, "BUILDOS": "linux", "BUILDARCH": host_arch(), "BUILDVARIANT": "",
        "TARGETPLATFORM": tgt, "TARGETOS": parts[0], "TARGETARCH": parts[1] if len(parts) > 1 else "",
        "TARGETVARIANT": parts[2] if len(parts) > 2 else "",
    }


def now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def scratch_config(plat: str | None) -> Config:
    parts = (plat or f"linux/{host_arch()}").split("/")
    cfg: Config = {
        "architecture": parts[1] if len(parts) > 1 else host_arch(),
        "os": parts[0] or "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if len(parts) > 2:
        cfg["variant"] = parts[2]
    return cfg


def runtime(cfg: Config) -> dict[str, object]:
    rt = cfg.get("config")
    if not isinstance(rt, dict):
        rt = {}
        cfg["config"] = rt
    return rt


def env_map(cfg: Config) -> dict[str, str]:
    env = runtime(cfg).get("Env") or []
    pairs = (str(e).partition("=") for e in env) if isinstance(env, list) else iter(())
    return {k: v for k, _, v in pairs}


def diff_ids(cfg: Config) -> list[str]:
    rootfs = cfg.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    return [str(d) for d in ids] if isinstance(ids, list) else []


def next_config(parent: Config, created_by: str, diff_id: str | None) -> Config:
    """A copy of `parent` with a history entry (and a layer when `diff_id`)."""
    cfg = copy.deepcopy(parent)
    for stale in ("container", "container_config", "id", "parent", "docker_version"):
        cfg.pop(stale, None)
    stamp = now()
    cfg["created"] = stamp
    entry: dict[str, object] = {"created": stamp, "created_by": created_by, "comment": "rootless build"}
    if diff_id is None:
        entry["empty_layer"] = True
    else:
        cfg["rootfs"] = {"type": "layers", "diff_ids": [*diff_ids(parent), diff_id]}
    history = cfg.get("history")
    cfg["history"] = [*(history if isinstance(history, list) else []), entry]
    return cfg


def shell_of(cfg: Config) -> list[str]:
    sh = runtime(cfg).get("Shell")
    return [str(x) for x in sh] if isinstance(sh, list) and sh else list(DEFAULT_SHELL)


def command_argv(ins: Instruction, cfg: Config) -> list[str]:
    """CMD/ENTRYPOINT/RUN/HEALTHCHECK CMD argv: the exec form as is, the shell form
    through the image's SHELL."""
    if ins.json_args is not None:
        return list(ins.json_args)
    return [*shell_of(cfg), ins.value]


def duration_ns(text: str, ins: Instruction) -> int:
    pos, total = 0, 0
    if text == "0":
        return 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        ns = float(m.group(1)) * _UNITS[m.group(2)]
        if not ns < 2**63:  # also inf: the image config holds int64 nanoseconds
            raise ins.error(f"invalid duration {text[:40]!r}: too long")
        total += int(ns)
        pos = m.end()
    if pos != len(text) or not text:
        raise ins.error(f"invalid duration {text!r} (use e.g. 30s, 1m30s)")
    if total >= 2**63:
        raise ins.error(f"invalid duration {text[:40]!r}: too long")
    return total


def healthcheck(ins: Instruction, cfg: Config) -> dict[str, object]:
    value = ins.value.strip()
    head, _, rest = value.partition(" ")
    kind = head.upper()
    if kind == "NONE":
        if rest.strip() or ins.flags:
            raise ins.error("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD" or not rest.strip():
        raise ins.error("HEALTHCHECK needs CMD <command> or NONE")
    argv = json_list(rest)
    hc: dict[str, object] = {"Test": ["CMD", *argv] if argv is not None else ["CMD-SHELL", rest.strip()]}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, val in ins.flags.items():
        if flag in names:
            hc[names[flag]] = duration_ns(val, ins)
        elif flag == "retries":
            if not val.isdigit():
                raise ins.error(f"invalid --retries {val!r}")
            hc["Retries"] = int(val)
        else:
            raise ins.error(f"unknown flag --{flag} for HEALTHCHECK")
    return hc


def key_values(ins: Instruction, env: dict[str, str], escape: str) -> list[tuple[str, str]]:
    """ENV/LABEL pairs: `K=V ...` (quotes allowed) or the legacy `K V with spaces`."""
    where = f"{ins.path}:{ins.line}"
    value = ins.value.strip()
    if not value:
        raise ins.error(f"{ins.keyword} requires at least one argument")
    first = value.split(None, 1)[0]
    if "=" not in first and ins.keyword == "ENV":
        key, _, rest = value.partition(" ")
        if not rest.strip():
            raise ins.error(f"{ins.keyword} must have two arguments: {ins.keyword} KEY=VALUE")
        return [(key, _expand1(rest.strip(), env, escape, where))]
    pairs = []
    for word in words(value, env, escape=escape, where=where):
        key, eq, val = word.partition("=")
        if not eq or not key:
            raise ins.error(f"{ins.keyword} expects KEY=VALUE, got {word!r}")
        pairs.append((key, val))
    return pairs


def _expand1(text: str, env: dict[str, str], escape: str, where: str) -> str:
    from rootless.build.dockerfile import expand

    return expand(text, env, escape=escape, where=where)


def apply_metadata(ins: Instruction, cfg: Config, env: dict[str, str], escape: str) -> str:
    """Apply a metadata instruction to `cfg` (in place); returns its canonical text
    (the cache key text and the history's created_by)."""
    rt = runtime(cfg)
    kw = ins.keyword
    where = f"{ins.path}:{ins.line}"
    if kw in ("CMD", "ENTRYPOINT"):
        argv = command_argv(ins, cfg)
        rt["Cmd" if kw == "CMD" else "Entrypoint"] = argv
        return f"{kw} {json.dumps(argv)}"
    if kw == "ENV":
        current = env_map(cfg)
        pairs = key_values(ins, {**env, **current}, escape)
        for k, v in pairs:
            current[k] = v
        rt["Env"] = [f"{k}={v}" for k, v in current.items()]
        return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if kw in ("LABEL", "MAINTAINER"):
        labels = rt.get("Labels")
        merged = dict(labels) if isinstance(labels, dict) else {}
        if kw == "MAINTAINER":
            cfg["author"] = _expand1(ins.value.strip(), env, escape, where)
            return "MAINTAINER " + str(cfg["author"])
        pairs = key_values(ins, env, escape)
        merged.update(pairs)
        rt["Labels"] = merged
        return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if kw == "EXPOSE":
        ports = rt.get("ExposedPorts")
        merged = dict(ports) if isinstance(ports, dict) else {}
        for word in words(ins.value, env, escape=escape, where=where):
            m = _PORT.match(word)
            first, last = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
            if m is None or not 0 < first <= last < 65536:
                raise ins.error(f"invalid port {word!r}: use PORT[-PORT][/tcp|/udp|/sctp], 1-65535")
            for port in range(first, last + 1):
                merged[f"{port}/{(m.group(3) or 'tcp').lower()}"] = {}
        rt["ExposedPorts"] = merged
        return "EXPOSE " + " ".join(sorted(merged))
    if kw == "VOLUME":
        vols = rt.get("Volumes")
        merged = dict(vols) if isinstance(vols, dict) else {}
        paths = ins.json_args if ins.json_args is not None else words(ins.value, env, escape=escape, where=where)
        paths = [_expand1(p, env, escape, where) for p in paths] if ins.json_args is not None else paths
        if not paths or not all(paths):
            raise ins.error("VOLUME needs a path")
        for p in paths:
            merged[p] = {}
        rt["Volumes"] = merged
        return "VOLUME " + json.dumps(paths)
    if kw == "WORKDIR":
        path = _expand1(ins.value.strip(), env, escape, where)
        if not path:
            raise ins.error("WORKDIR needs a path")
        rt["WorkingDir"] = posixpath.normpath(posixpath.join(str(rt.get("WorkingDir") or "/"), path))
        return "WORKDIR " + str(rt["WorkingDir"])
    if kw == "USER":
        user = _expand1(ins.value.strip(), env, escape, where)
        if not user or " " in user:
            raise ins.error("USER takes one name or id: USER user[:group]")
        rt["User"] = user
        return "USER " + user
    if kw == "SHELL":
        if ins.json_args is None or not ins.json_args:
            raise ins.error('SHELL requires the exec form: SHELL ["executable", "parameters"]')
        rt["Shell"] = list(ins.json_args)
        return "SHELL " + json.dumps(ins.json_args)
    if kw == "STOPSIGNAL":
        sig = _expand1(ins.value.strip(), env, escape, where)
        if not re.fullmatch(r"(SIG[A-Z0-9+-]+|[A-Z0-9]+|\d+)", sig.upper()):
            raise ins.error(f"invalid STOPSIGNAL {sig!r}")
        rt["StopSignal"] = sig
        return "STOPSIGNAL " + sig
    if kw == "HEALTHCHECK":
        rt["Healthcheck"] = healthcheck(ins, cfg)
        return "HEALTHCHECK " + json.dumps(rt["Healthcheck"], sort_keys=True)
    if kw == "ONBUILD":
        triggers = rt.get("OnBuild")
        lst = list(triggers) if isinstance(triggers, list) else []
        lst.append(ins.value.strip())
        rt["OnBuild"] = lst
        return "ONBUILD " + ins.value.strip()
    raise DockerfileError(f"{where}: {kw} is not a metadata instruction")
