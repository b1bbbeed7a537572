#!/usr/bin/env python3
"""Write docs/cli.md from the commands' own --help texts (tests check it is current)."""

from __future__ import annotations

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def render() -> str:
    from rootless.cli.main import COMMANDS, _global_help

    parts = ["# CLI reference", "",
             "Generated from `rootless COMMAND --help` by `scripts/gen_cli_docs.py`.", "",
             "```", _global_help().rstrip(), "```", ""]
    for name in sorted(COMMANDS):
        module = importlib.import_module(COMMANDS[name][0])
        parts += [f"## {name}", "", "```", module.COMMAND.help_text().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(HERE), "docs", "cli.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render())
    print(f"wrote {path}")
