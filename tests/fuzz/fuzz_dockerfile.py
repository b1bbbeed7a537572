"""Fuzz the Dockerfile parser and word expansion (rootless/build/dockerfile.py)
and the pure instruction handling built on it (rootless/build/steps.py).

Input: the Dockerfile's bytes, decoded as `rootless build` reads the file
(UTF-8, universal newlines; undecodable input is refused before parsing).
Invariants: only DockerfileError escapes `parse`, `words`, `expand`,
`expand_heredoc`, `parse_instruction` (ONBUILD triggers) and
`steps.apply_metadata` (the metadata instructions on a scratch config), and its
message is one line; exposed ports are 1-65535 with a known protocol and
healthcheck durations fit the config's int64 nanoseconds.
"""

from __future__ import annotations

import io
import os
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # fuzzlib; appended: rootless stays first
import fuzzlib

with fuzzlib.instrumented(__name__ == "__main__"):
    from rootless.build import steps
    from rootless.build.dockerfile import (
        DockerfileError,
        Instruction,
        expand,
        expand_heredoc,
        parse,
        parse_instruction,
        words,
    )

ENV = {"A": "a", "EMPTY": "", "SPACE": "x y", "HOME": "/root"}
METADATA = frozenset({"CMD", "ENTRYPOINT", "ENV", "LABEL", "MAINTAINER", "EXPOSE", "VOLUME",
                      "WORKDIR", "USER", "SHELL", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD"})


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc), str(exc)


def _instruction(ins: Instruction, escape: str, cfg: steps.Config) -> None:
    where = f"{ins.path}:{ins.line}"
    for run in (
        lambda: words(ins.value, ENV, escape=escape, where=where),
        lambda: expand(ins.value, ENV, escape=escape, where=where),
        lambda: [expand(v, ENV, escape=escape, where=where) for v in ins.flags.values()],
        lambda: [expand_heredoc(doc.content, ENV) for doc in ins.heredocs],
    ):
        try:
            run()
        except DockerfileError as exc:
            _one_line(exc)
    if ins.keyword == "ONBUILD":
        try:
            parse_instruction(ins.value, ins.path, ins.line, escape)
        except DockerfileError as exc:
            _one_line(exc)
    if ins.keyword in METADATA:
        try:
            steps.apply_metadata(ins, cfg, dict(ENV), escape)
        except DockerfileError as exc:
            _one_line(exc)
        steps.command_argv(ins, cfg)
        check = steps.runtime(cfg).get("Healthcheck")
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
            value = check.get(key, 0) if isinstance(check, dict) else 0
            assert isinstance(value, int) and 0 <= value < 2**63, f"healthcheck {key} {value!r}"
        ports = steps.runtime(cfg).get("ExposedPorts")
        for port in ports if isinstance(ports, dict) else {}:
            number, _, proto = str(port).partition("/")
            assert 0 < int(number) < 65536 and proto in ("tcp", "udp", "sctp"), f"exposed {port!r}"


def test_one_input(data: bytes) -> None:
    try:
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
    except UnicodeDecodeError:
        return  # `rootless build` refuses the file before parsing
    try:
        df = parse(text, "Dockerfile")
    except DockerfileError as exc:
        _one_line(exc)
        return
    assert df.instructions and df.escape in ("\\", "`")
    cfg = steps.scratch_config("linux/amd64")
    for ins in df.instructions:
        _instruction(ins, df.escape, cfg)


if __name__ == "__main__":
    fuzzlib.main(test_one_input)
