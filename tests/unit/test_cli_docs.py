"""docs/cli.md is generated from the --help texts and must not drift from them."""

from __future__ import annotations

import importlib.util
import os

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", os.path.join(TOP, "scripts", "gen_cli_docs.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(os.path.join(TOP, "docs", "cli.md"), encoding="utf-8") as f:
        assert f.read() == mod.render(), "docs/cli.md is stale: run python3 scripts/gen_cli_docs.py"


def test_every_command_has_help():
    from rootless.cli.main import COMMANDS

    for name, (module, summary) in COMMANDS.items():
        command = importlib.import_module(module).COMMAND
        text = command.help_text()
        assert text.startswith("Usage:  rootless ") and summary
        assert command.summary
