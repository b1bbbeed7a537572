"""Which registries may be reached without TLS verification (and over plain HTTP).

A registry is *insecure* when any of these says so:

1. the caller passes `tls_verify=False` (`--tls-verify=false`);
2. its host is loopback: `localhost`, `127.0.0.0/8`, `::1` (any port);
3. `ROOTLESS_INSECURE_REGISTRIES=host:port,host2` names it (an entry without a port
   matches every port of that host);
4. `$XDG_CONFIG_HOME/rootless/registries.conf` (default `~/.config/rootless/...`), a
   TOML file in the style of containers-registries.conf, has an entry
   `[[registry]] location = "host:port"  insecure = true`.

`tls_verify=True` from the caller wins over 2-4 (forces verified HTTPS).

Extra certificate authorities for a registry are read, like podman/docker, from
`*.crt` files in `$XDG_CONFIG_HOME/containers/certs.d/<host[:port]>/` (default
`~/.config/...`), `/etc/containers/certs.d/<host[:port]>/` and
`/etc/docker/certs.d/<host[:port]>/` (see `ca_files_for`).

For an insecure registry the client tries HTTPS without certificate verification
first and falls back to plain HTTP when the TLS handshake fails or the port refuses
(docker's behaviour); a secure registry is only ever spoken to over verified HTTPS.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ENV_VAR = "ROOTLESS_INSECURE_REGISTRIES"


def split_host_port(hostport: str) -> tuple[str, int | None]:
    """`host:port` / `[v6]:port` / `host` -> (lowercase host without brackets, port)."""
    text = hostport.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    return host, int(port) if port.isdigit() else None


def is_loopback(host: str) -> bool:
    """Whether a host name or IP literal is this machine (no DNS lookup)."""
    name, _port = split_host_port(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def config_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rootless", "registries.conf")


def _entries_from_env(env: Mapping[str, str]) -> list[str]:
    return [item.strip() for item in env.get(ENV_VAR, "").split(",") if item.strip()]


def _entries_from_config(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return []
    except (OSError, tomllib.TOMLDecodeError):
        return []  # a broken optional file must not break pulls from secure registries
    out = []
    registries = data.get("registry", [])
    for entry in registries if isinstance(registries, list) else []:
        if not isinstance(entry, dict) or entry.get("insecure") is not True:
            continue
        location = entry.get("location") or entry.get("prefix")
        if isinstance(location, str) and location:
            out.append(location.split("/", 1)[0])
    return out


def _matches(entry: str, host: str, port: int | None) -> bool:
    e_host, e_port = split_host_port(entry)
    return e_host == host and (e_port is None or e_port == port)


@dataclass(frozen=True)
class InsecurePolicy:
    """The set of registries allowed to skip TLS verification."""

    entries: tuple[str, ...] = ()
    allow_loopback: bool = True

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str] | None = None, extra: Iterable[str] = ()
    ) -> InsecurePolicy:
        env = os.environ if env is None else env
        entries = _entries_from_env(env) + _entries_from_config(config_path(env)) + list(extra)
        return cls(tuple(entries))

    def is_insecure(self, registry: str, tls_verify: bool | None = None) -> bool:
        """Whether `registry` (host[:port]) may use unverified TLS or plain HTTP."""
        if tls_verify is not None:
            return not tls_verify
        if self.allow_loopback and is_loopback(registry):
            return True
        host, port = split_host_port(registry)
        return any(_matches(entry, host, port) for entry in self.entries)


def is_insecure(registry: str, tls_verify: bool | None = None) -> bool:
    """`InsecurePolicy.from_environment().is_insecure(...)` in one call."""
    return InsecurePolicy.from_environment().is_insecure(registry, tls_verify)


def certs_d_dirs(registry: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The certs.d directories searched for `registry`'s CA files, in order."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    roots = [os.path.join(base, "containers", "certs.d"), "/etc/containers/certs.d"]
    roots.append("/etc/docker/certs.d")
    return [os.path.join(root, registry) for root in roots]


def ca_files_for(registry: str, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`*.crt` CA files that extend the system trust store for `registry`."""
    files: list[str] = []
    for directory in certs_d_dirs(registry, env):
        files += sorted(glob.glob(os.path.join(glob.escape(directory), "*.crt")))
    return tuple(files)
