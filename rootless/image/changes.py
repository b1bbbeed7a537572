"""Dockerfile-style `--change` instructions for `import` and `commit`.

    apply_changes(config, ["CMD [\"/bin/sh\"]", "ENV A=1 B=\"two words\"", ...])

`config` is the image config's runtime section (the `config` object of an OCI
image config: `Cmd`, `Entrypoint`, `Env`, `WorkingDir`, `User`, `Labels`,
`ExposedPorts`, `Volumes`, `StopSignal`); a new dict is returned, the input is
not modified. Supported: CMD, ENTRYPOINT (JSON or shell form), ENV, LABEL (`k=v`
pairs, quotes allowed; ENV also the legacy `ENV k v`), WORKDIR (relative to the
current one), USER, EXPOSE (`80`, `80/tcp`, `53/udp`, `8000-8002`), VOLUME (JSON
or words), STOPSIGNAL. `INSTRUCTION=value` is accepted as podman does. Values of
ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME and STOPSIGNAL expand `$VAR`,
`${VAR}`, `${VAR:-default}` and `${VAR:+alt}` from the environment set so far.
Anything else raises UsageError naming the change.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import shlex
from collections.abc import Callable

from rootless.errors import UsageError

SHELL = ["/bin/sh", "-c"]
_KEYWORD = re.compile(r"^\s*([A-Za-z]+)(?:\s+|=)(.*)$", re.DOTALL)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_SIGNAL = re.compile(r"^(SIG[A-Z0-9+-]+|[A-Z0-9]+|\d+)$")
_PORT = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)


def _bad(change: str, why: str) -> UsageError:
    return UsageError(f"invalid change {change!r}: {why}")


def apply_changes(config: dict[str, object], changes: list[str]) -> dict[str, object]:
    """Apply each change in order to a copy of `config` and return it."""
    out = copy.deepcopy(config)
    for change in changes:
        match = _KEYWORD.match(change)
        if match is None:
            raise _bad(change, "expected INSTRUCTION VALUE")
        keyword, value = match.group(1).upper(), match.group(2).strip()
        handler = _HANDLERS.get(keyword)
        if handler is None:
            raise _bad(
                change,
                f"unknown instruction {keyword}: use one of {', '.join(sorted(_HANDLERS))}",
            )
        if not value:
            raise _bad(change, f"{keyword} needs a value")
        handler(out, value, change)
    return out


# ---------------------------------------------------------------- parsing helpers


def _json_list(value: str) -> list[str] | None:
    """The JSON form (a list of strings), or None for the shell form."""
    if not value.startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None  # docker: not valid JSON -> shell form
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        return None
    return [str(x) for x in parsed]


def _env_map(config: dict[str, object]) -> dict[str, str]:
    env = config.get("Env") or []
    pairs = (str(e).partition("=") for e in env) if isinstance(env, list) else iter(())
    return {k: v for k, _, v in pairs}


def expand(text: str, env: dict[str, str]) -> str:
    """Docker's variable substitution; `\\$` stays a literal `$`."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == "-":
            return value if value else word
        if op == "+":
            return word if value else ""
        return value or ""

    parts = text.split("\\$")
    return "$".join(_VAR.sub(one, p) for p in parts)


def _words(value: str, change: str) -> list[str]:
    try:
        return shlex.split(value, posix=True)
    except ValueError as exc:
        raise _bad(change, str(exc)) from None


def _pairs(value: str, change: str, keyword: str) -> list[tuple[str, str]]:
    words = _words(value, change)
    if keyword == "ENV" and words and "=" not in words[0]:
        key, _, rest = value.partition(" ")
        if not rest.strip():
            raise _bad(change, "ENV needs a value: ENV KEY=VALUE or ENV KEY VALUE")
        return [(key, rest.strip())]
    pairs = []
    for word in words:
        key, eq, val = word.partition("=")
        if not eq or not key:
            raise _bad(change, f"{keyword} expects KEY=VALUE pairs, got {word!r}")
        pairs.append((key, val))
    return pairs


# ---------------------------------------------------------------- instructions


def _argv(key: str) -> Callable[[dict[str, object], str, str], None]:
    def handle(config: dict[str, object], value: str, change: str) -> None:
        argv = _json_list(value)
        config[key] = argv if argv is not None else [*SHELL, value]

    return handle


def _env(config: dict[str, object], value: str, change: str) -> None:
    env = _env_map(config)
    for key, val in _pairs(value, change, "ENV"):
        env[key] = expand(val, env)
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def _label(config: dict[str, object], value: str, change: str) -> None:
    env = _env_map(config)
    labels = config.get("Labels")
    merged = dict(labels) if isinstance(labels, dict) else {}
    for key, val in _pairs(value, change, "LABEL"):
        merged[expand(key, env)] = expand(val, env)
    config["Labels"] = merged


def _workdir(config: dict[str, object], value: str, change: str) -> None:
    path = expand(value, _env_map(config))
    current = str(config.get("WorkingDir") or "/")
    config["WorkingDir"] = posixpath.normpath(posixpath.join(current, path))


def _user(config: dict[str, object], value: str, change: str) -> None:
    user = expand(value, _env_map(config))
    if " " in user.strip():
        raise _bad(change, "USER takes one name or id (user[:group])")
    config["User"] = user.strip()


def _expose(config: dict[str, object], value: str, change: str) -> None:
    env = _env_map(config)
    ports = config.get("ExposedPorts")
    merged = dict(ports) if isinstance(ports, dict) else {}
    for word in _words(expand(value, env), change):
        m = _PORT.match(word)
        if m is None or not 0 < int(m.group(1)) < 65536:
            raise _bad(change, f"bad port {word!r}: use PORT[/tcp|/udp|/sctp]")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first or last > 65535:
            raise _bad(change, f"bad port range {word!r}")
        proto = (m.group(3) or "tcp").lower()
        for port in range(first, last + 1):
            merged[f"{port}/{proto}"] = {}
    config["ExposedPorts"] = merged


def _volume(config: dict[str, object], value: str, change: str) -> None:
    env = _env_map(config)
    paths = _json_list(value)
    if paths is None:
        paths = _words(value, change)
    volumes = config.get("Volumes")
    merged = dict(volumes) if isinstance(volumes, dict) else {}
    for path in paths:
        path = expand(path, env)
        if not path:
            raise _bad(change, "VOLUME needs a path")
        merged[path] = {}
    config["Volumes"] = merged


def _stopsignal(config: dict[str, object], value: str, change: str) -> None:
    sig = expand(value, _env_map(config)).strip()
    if not _SIGNAL.match(sig.upper()):
        raise _bad(change, f"bad signal {sig!r}")
    config["StopSignal"] = sig


_HANDLERS: dict[str, Callable[[dict[str, object], str, str], None]] = {
    "CMD": _argv("Cmd"),
    "ENTRYPOINT": _argv("Entrypoint"),
    "ENV": _env,
    "EXPOSE": _expose,
    "LABEL": _label,
    "STOPSIGNAL": _stopsignal,
    "USER": _user,
    "VOLUME": _volume,
    "WORKDIR": _workdir,
}

__all__ = ["apply_changes", "expand"]
