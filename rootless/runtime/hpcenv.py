"""The environment and bind policy for batch jobs (`--env-host`, `-e 'GLOB'`, `--home`).

Imported only when one of these options is used, so plain `run` pays nothing.

Precedence, lowest first (see docs/hpc.md):
  1. the defaults: PATH, HOSTNAME, HOME (and TERM with -t)
  2. --env-host: the host's environment, less DENY and DENY_PREFIXES
  3. the image's Env
  4. --env-file, then -e (a glob like 'SLURM_*' copies every matching host variable)
  5. --home: HOME is the host's home directory, bound at the same path

PATH never comes from the host (its directories rarely exist in the image), nor do
the dynamic loader's variables (LD_PRELOAD, LD_LIBRARY_PATH...: host libraries would
be loaded into the image's programs); give them with -e when you mean it.
"""

from __future__ import annotations

import fnmatch
import os
import pwd

# Variables that describe this host session, not the job, or that break programs
# when they point at host paths the container does not have.
DENY = frozenset(
    {
        "PATH",
        "HOME",
        "HOSTNAME",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "TERM",
        "TERMCAP",
        "TMPDIR",
        "MAIL",
        "PS1",
        "PS2",
        "PROMPT_COMMAND",
        "SHELL",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "DISPLAY",
        "XAUTHORITY",
        "LS_COLORS",
        "PYTHONHOME",
        "PYTHONPATH",
    }
)
DENY_PREFIXES = ("LD_", "XDG_SESSION_", "BASH_FUNC_", "ROOTLESS_")

GLOB_CHARS = frozenset("*?[")


def is_glob(key: str) -> bool:
    return not GLOB_CHARS.isdisjoint(key)


def denied(key: str) -> bool:
    return key in DENY or key.startswith(DENY_PREFIXES)


def host_env(environ: dict[str, str] | None = None) -> list[str]:
    """--env-host: the host's environment as KEY=VALUE entries, less the deny-list."""
    src = os.environ if environ is None else environ
    return [f"{k}={v}" for k, v in sorted(src.items()) if not denied(k) and "=" not in k]


def expand_env(entries: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Replace each bare -e GLOB (no '=') with the host variables it matches (sorted).

    A glob that matches nothing adds nothing; the deny-list does not apply: asking
    for -e 'LD_*' by name is deliberate.
    """
    src = os.environ if environ is None else environ
    out: list[str] = []
    for item in entries:
        if "=" not in item and is_glob(item):
            out += [f"{k}={v}" for k, v in sorted(src.items()) if fnmatch.fnmatchcase(k, item)]
        else:
            out.append(item)
    return out


def home_dir() -> str:
    """The calling user's home directory on the host ($HOME, else the passwd entry)."""
    home = os.environ.get("HOME") or ""
    if not home.startswith("/"):
        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            home = ""
    if not home.startswith("/") or not os.path.isdir(home):
        from rootless.errors import UsageError

        raise UsageError(f"--home: your home directory {home or '(unset)'!r} does not exist")
    return os.path.realpath(home)


def default_workdir(binds: list[tuple[str, str]], cwd: str | None = None) -> str | None:
    """The current directory, when a bind shows it at the same path inside; else None.

    `binds` are (host source, container target) pairs, sources already real paths.
    """
    try:
        here = os.path.realpath(cwd or os.getcwd())
    except OSError:  # the cwd was removed
        return None
    for source, target in binds:
        src = source.rstrip("/") or "/"
        if src == "/" or os.path.normpath(target) != src:
            continue
        if here == src or here.startswith(src + "/"):
            return here
    return None
