"""Which shared (additional, read-only) image stores stack under the user's own.

Imported on the `run` hot path (the run cache's stamp covers the shared stores'
index.json): only `os` at import time, no dataclasses, no tomllib (11 ms).

The list comes from the first of these that says anything (podman's order):

  1. `--storage-opt additionalimagestore=DIR` (repeatable; an empty DIR: none)
  2. $ROOTLESS_IMAGE_STORES, colon-separated (set but empty: none)
  3. the first configuration file that exists, `$XDG_CONFIG_HOME/rootless/storage.conf`
     (else ~/.config/rootless/storage.conf), then `/etc/rootless/storage.conf`,
     with a TOML line `additional_image_stores = ["/dir", ...]`

Paths are made absolute; duplicates are dropped. See docs/storage.md.
"""

from __future__ import annotations

import os

from rootless.errors import StoreError, UsageError

ENV = "ROOTLESS_IMAGE_STORES"
CONFIG_NAME = "storage.conf"
SYSTEM_CONFIG = "/etc/rootless/storage.conf"
KEY = "additional_image_stores"
OPT_KEY = "additionalimagestore"

_from_cli: list[str] | None = None
_resolved: list[str] | None = None


def parse_storage_opts(values: list[str]) -> list[str] | None:
    """The shared stores named by `--storage-opt` values (None when none of them
    names one). An unknown option is a usage error."""
    stores: list[str] | None = None
    for value in values:
        key, sep, path = value.partition("=")
        if key.strip() not in (OPT_KEY, OPT_KEY + "s") or not sep:
            raise UsageError(
                f"unknown storage option {value!r}: rootless knows {OPT_KEY}=DIR (repeatable)"
            )
        stores = stores if stores is not None else []
        if path.strip():
            stores.append(path.strip())
    return stores


def set_cli_stores(stores: list[str] | None) -> None:
    """What the command line said (None: nothing; an empty list: no shared stores)."""
    global _from_cli, _resolved
    _from_cli = None if stores is None else [os.path.abspath(s) for s in stores]
    _resolved = None


def config_files() -> list[str]:
    """The configuration files, in the order they are looked for."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [os.path.join(base, "rootless", CONFIG_NAME), SYSTEM_CONFIG]


def image_stores() -> list[str]:
    """The shared stores, in lookup order (after the user's own store)."""
    global _resolved
    if _resolved is None:
        _resolved = _dedupe(_configured())
    return list(_resolved)


def _configured() -> list[str]:
    if _from_cli is not None:
        return _from_cli
    env = os.environ.get(ENV)
    if env is not None:
        return [os.path.abspath(p) for p in env.split(":") if p.strip()]
    for path in config_files():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from None
        stores = read_config(text, path)
        if stores is not None:
            return [os.path.abspath(p) for p in stores]
    return []


def _dedupe(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        p = os.path.normpath(p)
        if p not in out:
            out.append(p)
    return out


def stamp(roots: list[str]) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when any shared store's image index changes (for caches)."""
    out = []
    for root in roots:
        try:
            st = os.stat(os.path.join(root, "index.json"))
            out.append((root, st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((root, 0, 0, 0))
    return tuple(out)


# ---------------------------------------------------------------- the file


def read_config(text: str, where: str = "storage.conf") -> list[str] | None:
    """`additional_image_stores` from a TOML document (top level or under
    `[storage]`); None when the file does not set it. Only the TOML this needs is
    understood (tables, strings, arrays of strings, bare values); other keys are
    ignored, a malformed line is an error naming the file and line."""
    scan = _Scanner(text, where)
    table = ""
    found: list[str] | None = None
    while True:
        scan.skip_blank()
        if scan.at_end():
            return found
        if scan.peek() == "[":
            table = scan.table_header()
            continue
        key = scan.key()
        scan.expect("=")
        value = scan.value()
        scan.end_of_line()
        if key == KEY and table in ("", "storage"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise scan.error(f"{KEY} must be an array of strings")
            found = [str(v) for v in value]


class _Bare:
    """A value that is not a string (a number, a boolean, a date): never a path."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Scanner:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.i = 0

    def error(self, msg: str) -> StoreError:
        line = self.text.count("\n", 0, self.i) + 1
        return StoreError(f"{self.where}:{line}: {msg}")

    def at_end(self) -> bool:
        return self.i >= len(self.text)

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_space(self, newlines: bool = False) -> None:
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(self.text) and self.text[self.i] != "\n":
                    self.i += 1
            else:
                return

    def skip_blank(self) -> None:
        self.skip_space(newlines=True)

    def expect(self, c: str) -> None:
        self.skip_space()
        if self.peek() != c:
            raise self.error(f"expected {c!r}")
        self.i += 1

    def end_of_line(self) -> None:
        self.skip_space()
        if not self.at_end() and self.peek() != "\n":
            raise self.error("unexpected text after the value")

    def table_header(self) -> str:
        end = self.text.find("\n", self.i)
        line = self.text[self.i : end if end >= 0 else len(self.text)].split("#", 1)[0].strip()
        if not (line.startswith("[") and line.endswith("]")) or line.startswith("[["):
            raise self.error("bad table header")
        self.i = end if end >= 0 else len(self.text)
        return line[1:-1].strip().strip('"')

    def key(self) -> str:
        start = self.i
        if self.peek() in "\"'":
            return str(self._string())
        while self.i < len(self.text) and (self.text[self.i].isalnum() or self.text[self.i] in "_-."):
            self.i += 1
        if self.i == start:
            raise self.error("expected a key")
        return self.text[start : self.i]

    def value(self) -> object:
        self.skip_space()
        c = self.peek()
        if c in "\"'":
            return self._string()
        if c == "[":
            return self._array()
        start = self.i
        while self.i < len(self.text) and self.text[self.i] not in ",]\n#":
            self.i += 1
        word = self.text[start : self.i].strip()
        if not word:
            raise self.error("expected a value")
        return _Bare(word)

    def _array(self) -> list[object]:
        self.i += 1
        items: list[object] = []
        while True:
            self.skip_blank()
            if self.peek() == "]":
                self.i += 1
                return items
            if self.at_end():
                raise self.error("unterminated array")
            items.append(self.value())
            self.skip_blank()
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != "]":
                raise self.error("expected ',' or ']' in an array")

    def _string(self) -> str:
        quote = self.text[self.i]
        if self.text.startswith(quote * 3, self.i):
            raise self.error("multi-line strings are not supported here")
        self.i += 1
        out: list[str] = []
        while True:
            if self.at_end() or self.peek() == "\n":
                raise self.error("unterminated string")
            c = self.text[self.i]
            self.i += 1
            if c == quote:
                return "".join(out)
            if c == "\\" and quote == '"':
                esc = self.peek()
                self.i += 1
                mapped = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}.get(esc)
                if mapped is None:
                    raise self.error(f"unsupported escape \\{esc}")
                out.append(mapped)
            else:
                out.append(c)
