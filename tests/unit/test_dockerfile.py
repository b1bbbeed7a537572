"""The Dockerfile parser, word expansion, .dockerignore rules and the pure build
steps (no containers)."""

from __future__ import annotations

import os

import pytest

from rootless.build import steps
from rootless.build.context import Context, IgnoreRules, clean_source
from rootless.build.dockerfile import DockerfileError, expand, expand_heredoc, parse, words


def kinds(text: str) -> list[tuple[int, str, str]]:
    return [(i.line, i.keyword, i.value) for i in parse(text).instructions]


def test_comments_blank_lines_and_continuations() -> None:
    df = "# a comment\nFROM alpine\n\nRUN echo a \\\n  # inside\n\n  && echo b\n  # trailing\nCMD x\n"
    assert kinds(df) == [(2, "FROM", "alpine"), (4, "RUN", "echo a   && echo b"), (9, "CMD", "x")]


def test_keywords_are_case_insensitive() -> None:
    assert kinds("from alpine\nrun true\n") == [(1, "FROM", "alpine"), (2, "RUN", "true")]


def test_directives_and_escape() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert df.instructions[1].value == "dir c:\\   && echo"


def test_directive_after_an_instruction_is_a_comment() -> None:
    df = parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].value == "a  b"


def test_bad_escape() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:1: invalid escape"):
        parse("# escape=x\nFROM a\n")


def test_json_and_shell_forms() -> None:
    df = parse('FROM x\nCMD ["a", "b c"]\nCMD a b\nENTRYPOINT [not json\nRUN ["x", 1]\n')
    assert [i.json_args for i in df.instructions[1:]] == [["a", "b c"], None, None, None]


def test_flags() -> None:
    ins = parse("FROM --platform=linux/arm64 x AS b\nCOPY --from=b --chown=1:2 --chmod=755 a /b/\n").instructions
    assert ins[0].flags == {"platform": "linux/arm64"} and ins[0].value == "x AS b"
    assert ins[1].flags == {"from": "b", "chown": "1:2", "chmod": "755"} and ins[1].value == "a /b/"


def test_heredocs() -> None:
    df = parse("FROM x\nRUN <<EOF\necho $A\nEOF\nCOPY <<-'one' <<two /dst/\n\tline1\n\tone\nline2\ntwo\nCMD z\n")
    run, copy, cmd = df.instructions[1:]
    assert run.value == "<<EOF" and run.heredocs[0].content == "echo $A\n" and run.heredocs[0].expand
    assert [(h.name, h.content, h.expand, h.chomp) for h in copy.heredocs] == [
        ("one", "line1\n", False, True), ("two", "line2\n", True, False)]
    assert cmd.line == 10


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc 'EOF'"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_errors_name_file_and_line() -> None:
    with pytest.raises(DockerfileError, match=r"^sub/Dockerfile\.dev:3: unknown instruction: FORM$"):
        parse("FROM x\n\nFORM y\n", "sub/Dockerfile.dev")
    with pytest.raises(DockerfileError, match="Dockerfile:1: no build stage"):
        parse("RUN true\n")
    with pytest.raises(DockerfileError, match="no instructions"):
        parse("# only a comment\n")
    with pytest.raises(DockerfileError, match="Dockerfile:2: ONBUILD isn't allowed"):
        parse("FROM x\nONBUILD ONBUILD RUN x\n")


def test_arg_before_from() -> None:
    assert kinds("ARG V=1\nFROM x:$V\n") == [(1, "ARG", "V=1"), (2, "FROM", "x:$V")]


@pytest.mark.parametrize(("text", "want"), [
    ("$A", "1"), ("${A}", "1"), ("${UNSET}", ""), ("x${A}y", "x1y"),
    ("${UNSET:-def}", "def"), ("${EMPTY:-def}", "def"), ("${EMPTY-def}", ""), ("${A:-def}", "1"),
    ("${A:+alt}", "alt"), ("${UNSET:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("${UNSET:-${A}0}", "10"), ("'$A'", "$A"), ('"$A x"', "1 x"), ("\\$A", "$A"), ("a\\ b", "a b"),
    ("$", "$"), ("$1", "$1"),
])
def test_expand(text: str, want: str) -> None:
    assert expand(text, {"A": "1", "EMPTY": ""}) == want


def test_expand_errors() -> None:
    with pytest.raises(DockerfileError, match="Dockerfile:4: X: needed"):
        expand("${X:?needed}", {}, where="Dockerfile:4")
    with pytest.raises(DockerfileError, match="matching"):
        expand("'open", {})
    with pytest.raises(DockerfileError, match="^Dockerfile: "):
        expand("${A", {})


def test_words() -> None:
    assert words('a "b c"  ${X}d \'e f\'', {"X": "x"}) == ["a", "b c", "xd", "e f"]
    assert words("  ", {}) == []
    assert words("a `$X", {"X": "1"}, escape="`") == ["a", "$X"]


def test_heredoc_expansion_keeps_quotes() -> None:
    assert expand_heredoc("v='$A' \"${B:-b}\" \\$C\n", {"A": "1"}) == "v='1' \"b\" $C\n"


@pytest.mark.parametrize(("path", "excluded"), [
    ("a.log", True), ("keep.log", False), ("d/a.log", False), ("build", True), ("build/x/y", True),
    ("src/a/b.tmp", True), ("b.tmp", True), ("secret", True), ("secret/k", True), ("src/secret", False),
    ("docs/x.md", True), ("docs/README.md", False), ("f1", True), ("f12", False), ("[x]", False),
])
def test_dockerignore_rules(path: str, excluded: bool) -> None:
    rules = IgnoreRules(["# c", "", "*.log", "!keep.log", "build/", "**/*.tmp", "/secret", "docs",
                         "!docs/README.md", "f?"])
    assert rules.excluded(path) is excluded


def test_context_match_and_hash(tmp_path: object) -> None:
    root = str(tmp_path)
    for rel in ("a.txt", "b.txt", "c.md", "d/e.txt", "d/f.log", "x.log"):
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(rel)
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write("*.log\nd/*.log\n")
    ctx = Context(root)
    assert ctx.match("*.txt") == ["a.txt", "b.txt"]
    assert ctx.match("./d/../a.txt") == ["a.txt"]
    assert ctx.match("../../a.txt") == ["a.txt"]
    assert ctx.match("x.log") == [] and ctx.match("*.log") == []
    assert ctx.match("d") == ["d"] and ctx.listdir("d") == ["e.txt"]
    before = ctx.tree_hash("d")
    with open(os.path.join(root, "d/f.log"), "w") as f:
        f.write("ignored change")
    assert ctx.tree_hash("d") == before
    with open(os.path.join(root, "d/e.txt"), "w") as f:
        f.write("changed")
    assert ctx.tree_hash("d") != before
    assert clean_source(".") == "" and clean_source("/a/b/") == "a/b"


def test_metadata_steps() -> None:
    cfg = steps.scratch_config("linux/arm64/v8")
    assert (cfg["os"], cfg["architecture"], cfg["variant"]) == ("linux", "arm64", "v8")
    df = parse('FROM x\nENV A=1 B="two words"\nENV C $A-legacy\nLABEL "k 1"=v\nEXPOSE 80 53/udp 8000-8001\n'
               'VOLUME /a /b\nWORKDIR app\nWORKDIR sub\nUSER 1:2\nSHELL ["/bin/bash", "-c"]\nCMD echo $A\n'
               "STOPSIGNAL SIGQUIT\nHEALTHCHECK --interval=1m30s --timeout=5s --retries=2 CMD curl -f x\n"
               "ONBUILD RUN make\n")
    env: dict[str, str] = {}
    for ins in df.instructions[1:]:
        steps.apply_metadata(ins, cfg, {**env, **steps.env_map(cfg)}, "\\")
    rt = steps.runtime(cfg)
    assert rt["Env"] == ["A=1", "B=two words", "C=1-legacy"]
    assert rt["Labels"] == {"k 1": "v"}
    assert set(rt["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}  # type: ignore[arg-type]
    assert set(rt["Volumes"]) == {"/a", "/b"}  # type: ignore[arg-type]
    assert rt["WorkingDir"] == "/app/sub" and rt["User"] == "1:2"
    assert rt["Cmd"] == ["/bin/bash", "-c", "echo $A"]
    assert rt["StopSignal"] == "SIGQUIT"
    assert rt["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f x"], "Interval": 90 * 10**9,
                                 "Timeout": 5 * 10**9, "Retries": 2}
    assert rt["OnBuild"] == ["RUN make"]


@pytest.mark.parametrize("line", ["EXPOSE 99999", "SHELL /bin/sh", "HEALTHCHECK --interval=x CMD a",
                                  "HEALTHCHECK NONE extra", "USER a b", "LABEL novalue", "ENV A"])
def test_metadata_errors(line: str) -> None:
    ins = parse(f"FROM x\n{line}\n").instructions[1]
    with pytest.raises(DockerfileError, match="^Dockerfile:2: "):
        steps.apply_metadata(ins, steps.scratch_config(None), {}, "\\")


def test_next_config_history() -> None:
    cfg = steps.scratch_config(None)
    one = steps.next_config(cfg, "RUN x", "sha256:" + "a" * 64)
    two = steps.next_config(one, "ENV a", None)
    assert steps.diff_ids(two) == ["sha256:" + "a" * 64]
    assert [h.get("empty_layer", False) for h in two["history"]] == [False, True]  # type: ignore[union-attr]
