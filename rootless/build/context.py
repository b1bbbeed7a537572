"""The build context: a directory, its `.dockerignore`, source globs and hashes.

`.dockerignore` follows docker's rules (moby/patternmatcher): one pattern per
line, `#` comments, blank lines ignored; patterns are cleaned and taken relative
to the context root (a leading `/` is dropped); `*` and `?` do not cross `/`,
`**` matches any number of directories, `[...]` is a character class, the
escape is `\\`; `!pattern` re-includes; the last matching pattern wins, and a
path is excluded when it or one of its parent directories matches.

COPY/ADD sources are cleaned lexically (`../x` cannot leave the context) and may
be globs (Go's filepath.Match per component). `tree_hash` hashes what a COPY
would read: names, types, modes, link targets and file contents.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass

from rootless.errors import UsageError

_GLOB_CHARS = re.compile(r"[*?\[]")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:j]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclusion: bool  # a `!` pattern
    text: str


class IgnoreRules:
    """Compiled `.dockerignore` patterns."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            if neg:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/") if line else line
            if not line or line == ".":
                continue
            self.rules.append(_Rule(_pattern_regex(line), neg, line))
        self.has_exceptions = any(r.exclusion for r in self.rules)

    @classmethod
    def load(cls, context_dir: str) -> IgnoreRules:
        try:
            with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8", errors="replace") as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, rel: str) -> bool:
        """Whether `rel` (relative, "/"-separated) is left out of the context."""
        if not self.rules or not rel:
            return False
        parents = []
        parts = rel.split("/")
        for k in range(1, len(parts) + 1):
            parents.append("/".join(parts[:k]))
        result = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in parents):
                result = not rule.exclusion
        return result

    def may_include_below(self, rel: str) -> bool:
        """Whether an excluded directory may still hold re-included paths."""
        return self.has_exceptions and any(
            r.exclusion and (r.text.startswith(rel + "/") or _GLOB_CHARS.search(r.text)) for r in self.rules
        )


def clean_source(src: str) -> str:
    """A COPY source relative to the context root ("" = the root itself)."""
    return posixpath.normpath("/" + src).lstrip("/").rstrip("/") if src not in ("", ".") else ""


class Context:
    """A local directory as the build context."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise UsageError(f"unable to prepare the build context: {root} is not a directory")
        self.ignore = IgnoreRules.load(self.root)

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self.root, rel) if rel else self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, rel: str) -> list[str]:
        path = os.path.join(self.root, rel) if rel else self.root
        names = sorted(os.listdir(path))
        return [n for n in names if not self._skip(f"{rel}/{n}" if rel else n)]

    def host_path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def mode_of(self, rel: str, st: os.stat_result) -> int:
        return stat.S_IMODE(st.st_mode)

    def _skip(self, rel: str) -> bool:
        if not self.ignore.excluded(rel):
            return False
        st = self.lstat(rel)
        return not (st is not None and stat.S_ISDIR(st.st_mode) and self.ignore.may_include_below(rel))

    def match(self, src: str) -> list[str]:
        """The context paths a COPY source names (globs expanded), sorted; [] when none."""
        rel = clean_source(src)
        if not _GLOB_CHARS.search(rel):
            if rel and self.ignore.excluded(rel) and not self._dir_with_exceptions(rel):
                return []
            return [rel] if self.lstat(rel) is not None else []
        found = [""]
        for part in rel.split("/"):
            nxt = []
            for base in found:
                if _GLOB_CHARS.search(part):
                    st = self.lstat(base)
                    if st is None or not stat.S_ISDIR(st.st_mode):
                        continue
                    for name in self.listdir(base):
                        if fnmatch.fnmatchcase(name, part):
                            nxt.append(f"{base}/{name}" if base else name)
                else:
                    cand = f"{base}/{part}" if base else part
                    if self.lstat(cand) is not None and not self._skip(cand):
                        nxt.append(cand)
            found = nxt
        return sorted(found)

    def _dir_with_exceptions(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode) and self.ignore.may_include_below(rel)

    def tree_hash(self, rel: str) -> str:
        """sha256 over what copying `rel` reads (recursively for a directory)."""
        h = hashlib.sha256()
        stack = [rel]
        while stack:
            cur = stack.pop()
            st = self.lstat(cur)
            if st is None:
                continue
            h.update(f"{cur}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            path = os.path.join(self.root, cur) if cur else self.root
            if stat.S_ISDIR(st.st_mode):
                stack.extend(reversed([f"{cur}/{n}" if cur else n for n in self.listdir(cur)]))
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                h.update(file_digest(path).encode())
            h.update(b"\n")
        return h.hexdigest()


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
