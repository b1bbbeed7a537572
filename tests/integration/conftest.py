"""Integration tests drive the installed `rootless` CLI end to end.

Fixtures come from tests/conftest.py: cli, cli_factory, busybox_rootfs, pty_run,
registry, registry_auth (see docs/testing.md). Here: every integration test
fails (not skips) with a clear message when the CLI under test is missing.
"""

from __future__ import annotations

import os

import pytest
from helpers import ROOTLESS_BIN


@pytest.fixture(autouse=True)
def _rootless_cli_installed() -> None:
    if not os.path.exists(ROOTLESS_BIN):
        pytest.fail(
            f"rootless CLI not found at {ROOTLESS_BIN}: run `sudo bash scripts/setup-host.sh` "
            "or set ROOTLESS_BIN",
            pytrace=False,
        )
