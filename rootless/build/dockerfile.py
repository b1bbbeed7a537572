"""Dockerfile parser and word expansion (Docker's Dockerfile reference, classic syntax).

    df = parse(text, "Dockerfile")
    df.instructions  -> [Instruction(keyword, value, flags, heredocs, line, ...)]

What it handles:
  - parser directives at the top (`# syntax=...`, `# escape=\\` or `` ` ``,
    `# check=...`): `escape` changes the continuation/escape character;
  - comments (a line whose first non-blank character is `#`), blank lines and
    comment lines inside a continued instruction, line continuations;
  - flags before the arguments (`COPY --from=build --chown=1:1 a b`);
  - JSON (exec) and shell forms (`json_args` is set when the value is a JSON list
    of strings);
  - heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, several per line) for RUN, COPY and ADD.

`expand`/`words` do Docker's variable substitution: `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?msg}`,
with single quotes (literal), double quotes (expanded) and the escape character,
quotes removed. Errors are `DockerfileError`s naming the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rootless.errors import UsageError

KEYWORDS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})
HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)(?:\"([^\"]+)\"|'([^']+)'|([A-Za-z0-9_.\-/]+))")
_FLAG = re.compile(r"^--([A-Za-z][A-Za-z0-9-]*)(?:=(.*))?$", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DockerfileError(UsageError):
    """A Dockerfile that cannot be parsed or built; the message names file and line."""


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    expand: bool  # the delimiter was not quoted
    chomp: bool  # <<- : leading tabs removed


@dataclass
class Instruction:
    keyword: str  # upper case
    value: str  # the arguments after the flags (heredoc bodies not included)
    line: int  # 1-based line of the keyword
    original: str  # the logical line as written (continuations joined)
    flags: dict[str, str] = field(default_factory=dict)
    heredocs: list[Heredoc] = field(default_factory=list)
    json_args: list[str] | None = None  # exec form
    path: str = "Dockerfile"

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.path}:{self.line}: {message}")

    def flag_list(self, name: str) -> list[str]:
        raw = self.flags.get(name)
        return raw.split("\0") if raw is not None else []


@dataclass
class Dockerfile:
    path: str
    escape: str
    directives: dict[str, str]
    instructions: list[Instruction]


# ---------------------------------------------------------------- expansion


class _Lexer:
    """Docker's shell-word processing for Dockerfile arguments (not for RUN)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, where: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape
        self.where = where

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def words(self, split: bool) -> list[str]:
        out: list[str] = []
        cur: list[str] = []
        started = False
        while self.i < len(self.s):
            ch = self.s[self.i]
            if split and ch.isspace():
                self.i += 1
                if started:
                    out.append("".join(cur))
                    cur, started = [], False
                continue
            started = True
            if ch == "'":
                self.i += 1
                cur.append(self._until_quote("'"))
            elif ch == '"':
                self.i += 1
                cur.append(self._double())
            elif ch == self.esc:
                self.i += 1
                if self.i < len(self.s):
                    cur.append(self.s[self.i])
                    self.i += 1
                else:
                    cur.append(ch)
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
                self.i += 1
        if started or not split:
            out.append("".join(cur))
        return out

    def _until_quote(self, q: str) -> str:
        j = self.s.find(q, self.i)
        if j < 0:
            raise DockerfileError(f"{self.where}: unexpected end of statement while looking for matching {q}")
        text = self.s[self.i:j]
        self.i = j + 1
        return text

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise DockerfileError(f'{self.where}: unexpected end of statement while looking for matching "')
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == self.esc and self.i + 1 < len(self.s) and self.s[self.i + 1] in ('"', "$", self.esc):
                out.append(self.s[self.i + 1])
                self.i += 2
            elif ch == "$":
                out.append(self._dollar())
            else:
                out.append(ch)
                self.i += 1

    def _dollar(self) -> str:
        self.i += 1
        if self.peek() == "{":
            return self._braced()
        m = _NAME.match(self.s, self.i)
        if m is None:
            return "$"
        self.i = m.end()
        return self.env.get(m.group(0), "")

    def _braced(self) -> str:
        self.i += 1
        m = _NAME.match(self.s, self.i)
        if m is None:
            raise DockerfileError(f"{self.where}: bad substitution in {self.s!r}")
        name = m.group(0)
        self.i = m.end()
        ch = self.peek()
        if ch == "}":
            self.i += 1
            return self.env.get(name, "")
        op = ""
        if ch == ":":
            op, self.i = ":", self.i + 1
            ch = self.peek()
        if ch not in ("-", "+", "?"):
            raise DockerfileError(f"{self.where}: unsupported modifier {op + ch!r} in ${{{name}...}}")
        op += ch
        self.i += 1
        word = self._word_until_brace()
        value = self.env.get(name)
        is_set = value is not None and (value != "" or ":" not in op)
        if op.endswith("-"):
            return value if is_set and value is not None else word
        if op.endswith("+"):
            return word if is_set else ""
        if not is_set:
            message = word.replace("\n", "\\n") or "is not set"  # one line, even from a heredoc
            raise DockerfileError(f"{self.where}: {name}: {message}")
        return value or ""

    def _word_until_brace(self) -> str:
        out: list[str] = []
        depth = 0
        while True:
            if self.i >= len(self.s):
                raise DockerfileError(f"{self.where}: missing '}}' in {self.s!r}")
            ch = self.s[self.i]
            if ch == "}" and depth == 0:
                self.i += 1
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            if ch == "'":
                self.i += 1
                out.append(self._until_quote("'"))
                continue
            if ch == '"':
                self.i += 1
                out.append(self._double())
                continue
            if ch == self.esc and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            out.append(ch)
            self.i += 1


def expand(text: str, env: Mapping[str, str], *, escape: str = "\\", where: str = "Dockerfile") -> str:
    """One word: variables substituted, quotes and escapes removed."""
    return _Lexer(text, env, escape, where).words(split=False)[0]


def words(text: str, env: Mapping[str, str], *, escape: str = "\\", where: str = "Dockerfile") -> list[str]:
    """Whitespace-separated words, each expanded as by `expand`."""
    return _Lexer(text, env, escape, where).words(split=True)


def expand_heredoc(text: str, env: Mapping[str, str]) -> str:
    """Heredoc bodies: only `$VAR`/`${VAR...}` (quotes are content)."""
    out: list[str] = []
    lex = _Lexer(text, env, "\\", "heredoc")
    while lex.i < len(text):
        ch = text[lex.i]
        if ch == "\\" and lex.i + 1 < len(text) and text[lex.i + 1] == "$":
            out.append("$")
            lex.i += 2
        elif ch == "$":
            out.append(lex._dollar())
        else:
            out.append(ch)
            lex.i += 1
    return "".join(out)


def json_list(value: str) -> list[str] | None:
    """The exec form: a JSON list of strings; None for the shell form."""
    v = value.strip()
    if not v.startswith("["):
        return None
    try:
        parsed = json.loads(v)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        return None
    return [str(x) for x in parsed]


# ---------------------------------------------------------------- parsing


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip()) if lines[i].strip().startswith("#") else None
        if m is None:
            break
        key = m.group(1).lower()
        if key not in ("syntax", "escape", "check") or key in found:
            break
        found[key] = m.group(2)
        i += 1
    return found, i


def _continues(line: str, escape: str) -> tuple[bool, str]:
    stripped = line.rstrip()
    if stripped.endswith(escape):
        return True, stripped[:-1]
    return False, line


def _split_flags(rest: str, ins: Instruction) -> str:
    """Take leading `--name=value` flags off `rest` into `ins.flags`."""
    while rest.startswith("--"):
        m = re.match(r"(\S+)\s*", rest)
        assert m is not None
        token = m.group(1)
        fm = _FLAG.match(token)
        if fm is None:
            raise ins.error(f"bad flag {token!r}")
        name, value = fm.group(1).lower(), fm.group(2)
        value = "true" if value is None else value
        if name in ins.flags:
            ins.flags[name] += "\0" + value
        else:
            ins.flags[name] = value
        rest = rest[m.end():]
    return rest


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.path = path
        self.directives, self.pos = _directives(self.lines)
        self.escape = self.directives.get("escape", "\\")
        if self.escape not in ("\\", "`"):
            raise DockerfileError(f"{path}:{self.pos}: invalid escape token {self.escape!r}: use \\ or `")

    def run(self) -> Dockerfile:
        out: list[Instruction] = []
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            start = self.pos + 1
            self.pos += 1
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            logical = self._logical(raw)
            out.append(self._instruction(logical, start))
        return Dockerfile(self.path, self.escape, self.directives, out)

    def _logical(self, first: str) -> str:
        parts: list[str] = []
        cont, text = _continues(first, self.escape)
        parts.append(text)
        while cont and self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            if line.lstrip().startswith("#") or not line.strip():
                continue
            cont, text = _continues(line, self.escape)
            parts.append(text)
        return "".join(parts).strip()

    def _instruction(self, logical: str, line: int) -> Instruction:
        keyword, _, rest = logical.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest
        kw = keyword.upper()
        ins = Instruction(kw, "", line, logical, path=self.path)
        if kw not in KEYWORDS:
            raise ins.error(f"unknown instruction: {keyword}")
        rest = rest.strip()
        if kw in ("RUN", "COPY", "ADD", "FROM", "HEALTHCHECK"):
            rest = _split_flags(rest, ins)
        if kw in HEREDOC_KEYWORDS and "<<" in rest and json_list(rest) is None:
            ins.heredocs = self._heredocs(rest, ins)
        ins.value = rest
        if kw in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"):
            ins.json_args = json_list(rest)
        if kw == "ONBUILD":
            inner = rest.split(None, 1)[0].upper() if rest else ""
            if inner in ("ONBUILD", "FROM", "MAINTAINER") or not inner:
                raise ins.error(f"{inner or 'an instruction'} isn't allowed as an ONBUILD trigger")
            if inner not in KEYWORDS:
                raise ins.error(f"unknown instruction: {inner}")
        return ins

    def _heredocs(self, rest: str, ins: Instruction) -> list[Heredoc]:
        docs = []
        for m in _HEREDOC.finditer(rest):
            chomp = m.group(1) == "-"
            name = m.group(2) or m.group(3) or m.group(4)
            quoted = m.group(4) is None
            body: list[str] = []
            while True:
                if self.pos >= len(self.lines):
                    raise ins.error(f"unterminated heredoc {name!r}")
                line = self.lines[self.pos]
                self.pos += 1
                check = line.lstrip("\t") if chomp else line
                if check == name:
                    break
                body.append(check if chomp else line)
            docs.append(Heredoc(name, "".join(b + "\n" for b in body), not quoted, chomp))
        return docs


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile; raises DockerfileError with file:line."""
    df = _Parser(text, path).run()
    if not df.instructions:
        raise DockerfileError(f"{path}: the Dockerfile has no instructions")
    first = next((i for i in df.instructions if i.keyword != "ARG"), None)
    if first is None or first.keyword != "FROM":
        where = first or df.instructions[0]
        raise where.error("no build stage in current context: the first instruction (after ARGs) must be FROM")
    return df


def parse_instruction(text: str, path: str, line: int, escape: str = "\\") -> Instruction:
    """One instruction (an ONBUILD trigger) parsed on its own."""
    p = _Parser(text, path)
    p.escape = escape
    return p._instruction(text.strip(), line)
