"""Where the shared image stores come from: --storage-opt, $ROOTLESS_IMAGE_STORES,
storage.conf (a small TOML subset read without tomllib)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator

import pytest

from rootless.errors import StoreError, UsageError
from rootless.store import shared


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    monkeypatch.delenv(shared.ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(shared, "SYSTEM_CONFIG", os.path.join(str(tmp_path), "none", "storage.conf"))
    shared.set_cli_stores(None)
    yield
    shared.set_cli_stores(None)


GOOD = [
    ('additional_image_stores = ["/a", "/b"]\n', ["/a", "/b"]),
    ("# c\n[storage]\nadditional_image_stores = [\n  '/a', # one\n  \"/b\",\n]\nx = 1\n", ["/a", "/b"]),
    ("driver = \"overlay\"\nadditional_image_stores = []\n", []),
    ('additional_image_stores = ["/with \\"quote\\""]\n', ['/with "quote"']),
    ("[other]\nadditional_image_stores = [\"/x\"]\n", None),  # another table: not ours
    ("mount_program = \"/usr/bin/fuse-overlayfs\"\n", None),
]


@pytest.mark.parametrize(("text", "want"), GOOD)
def test_read_config_agrees_with_tomllib(text: str, want: list[str] | None) -> None:
    assert shared.read_config(text) == want
    doc = tomllib.loads(text)
    found = doc.get("additional_image_stores", doc.get("storage", {}).get("additional_image_stores"))
    assert found == want


@pytest.mark.parametrize(
    "text",
    [
        'additional_image_stores = ["/a"\n',
        'additional_image_stores = "/a"\n',
        'additional_image_stores = ["/a", 3]\n',
        "additional_image_stores = [\"/a\"] junk\n",
        "[storage\n",
        '= ["/a"]\n',
        'additional_image_stores = ["/a]\n',
    ],
)
def test_read_config_errors_name_file_and_line(text: str) -> None:
    with pytest.raises(StoreError) as info:
        shared.read_config("# first\n" + text, "/etc/rootless/storage.conf")
    assert info.value.message.startswith("/etc/rootless/storage.conf:")
    assert "\n" not in info.value.message


def test_storage_opts() -> None:
    assert shared.parse_storage_opts(["additionalimagestore=/a", "additionalimagestore=/b"]) == ["/a", "/b"]
    assert shared.parse_storage_opts(["additionalimagestore="]) == []
    with pytest.raises(UsageError):
        shared.parse_storage_opts(["overlay.mount_program=/x"])
    with pytest.raises(UsageError):
        shared.parse_storage_opts(["additionalimagestore"])


def test_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    conf = os.path.join(str(tmp_path), "rootless", "storage.conf")
    os.makedirs(os.path.dirname(conf))
    with open(conf, "w") as f:
        f.write('additional_image_stores = ["/from/file", "/from/file"]\n')
    assert shared.image_stores() == ["/from/file"]  # duplicates dropped
    shared.set_cli_stores(None)
    monkeypatch.setenv(shared.ENV, "/e1::/e2")
    assert shared.image_stores() == ["/e1", "/e2"]
    shared.set_cli_stores(None)
    monkeypatch.setenv(shared.ENV, "")
    assert shared.image_stores() == []
    shared.set_cli_stores(["rel/dir"])
    assert shared.image_stores() == [os.path.abspath("rel/dir")]
