"""Authentication against real registries: htpasswd Basic and Bearer tokens."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import RegistryError
from rootless.image import types as t
from rootless.image.auth import AuthenticationError, Credentials, store_login
from rootless.image.reference import Reference
from rootless.image.registry import RegistryClient

USER, PASSWORD = "alice", "wonderland"  # as in conftest.Accounts
TOKEN_USER, TOKEN_PASSWORD = "tokuser", "tokpass"


def test_accounts_match_conftest(accounts: Any) -> None:
    assert (accounts.user, accounts.password) == (USER, PASSWORD)
    assert (accounts.token_user, accounts.token_password) == (TOKEN_USER, TOKEN_PASSWORD)


@pytest.fixture(scope="module")
def basic_pushed(basic_registry: Any, images: Any, layout_path: Path) -> str:
    images.push(
        layout_path,
        "simple",
        f"{basic_registry.host}/private/img:v1",
        "--preserve-digests",
        f"--dest-creds={USER}:{PASSWORD}",
    )
    return str(basic_registry.host)


@pytest.fixture(scope="module")
def token_pushed(token_registry: Any, images: Any, layout_path: Path) -> str:
    creds = f"--dest-creds={TOKEN_USER}:{TOKEN_PASSWORD}"
    for repo in ("public/img", "private/img"):
        images.push(
            layout_path, "simple", f"{token_registry.host}/{repo}:v1", "--preserve-digests", creds
        )
    return str(token_registry.host)


def read_layer(client: RegistryClient, repo: str) -> bytes:
    manifest = client.get_manifest(repo, "v1").parse()
    assert isinstance(manifest, t.Manifest)
    with client.open_blob(repo, manifest.layers[0].digest, manifest.layers[0].size) as r:
        return r.read()


# ---------------------------------------------------------------- basic


def test_basic_with_docker_config(basic_pushed: str, clean_env: Path, images: Any) -> None:
    raw = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (clean_env / ".docker").mkdir()
    (clean_env / ".docker" / "config.json").write_text(
        json.dumps({"auths": {f"http://{basic_pushed}": {"auth": raw}}})
    )
    ref = Reference.parse(f"{basic_pushed}/private/img:v1")
    with RegistryClient.for_reference(ref, retries=0) as client:
        assert read_layer(client, ref.repository) == images.simple.layers[0]
        assert client.auth.challenge is not None and client.auth.challenge.scheme == "basic"


def test_basic_with_auth_json(basic_pushed: str, clean_env: Path, images: Any) -> None:
    path = store_login(basic_pushed, USER, PASSWORD)
    assert path == str(clean_env / "run" / "containers" / "auth.json")
    with RegistryClient(basic_pushed, retries=0) as client:
        assert read_layer(client, "private/img") == images.simple.layers[0]


def test_basic_without_credentials(basic_pushed: str, clean_env: Path) -> None:
    with (
        RegistryClient(basic_pushed, retries=0) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.get_manifest("private/img", "v1")
    assert info.value.message.startswith(f"authentication required by registry {basic_pushed}")
    assert info.value.hint == f"run `rootless login {basic_pushed}` with valid credentials"


def test_basic_wrong_password(basic_pushed: str, clean_env: Path) -> None:
    with (
        RegistryClient(basic_pushed, credentials=Credentials(USER, "nope"), retries=0) as c,
        pytest.raises(AuthenticationError) as info,
    ):
        c.get_manifest("private/img", "v1")
    assert info.value.message.startswith(f"authentication to registry {basic_pushed} failed")
    assert "unauthorized" in info.value.message  # the registry's own words


# ---------------------------------------------------------------- bearer


def test_bearer_anonymous_pull_public(
    token_pushed: str, clean_env: Path, images: Any, token_server: Any
) -> None:
    before = len(token_server.seen)
    with RegistryClient(token_pushed, retries=0) as client:
        assert read_layer(client, "public/img") == images.simple.layers[0]
        assert client.auth.challenge is not None and client.auth.challenge.scheme == "bearer"
    new = token_server.seen[before:]
    assert len(new) == 1  # one token for the scope, cached for manifest + blob
    assert new[0]["authorization"] is None
    assert "scope=repository%3Apublic%2Fimg%3Apull" in str(new[0]["path"])


def test_bearer_with_credentials(
    token_pushed: str, clean_env: Path, images: Any, token_server: Any
) -> None:
    store_login(token_pushed, TOKEN_USER, TOKEN_PASSWORD)
    before = len(token_server.seen)
    with RegistryClient(token_pushed, retries=0) as client:
        assert read_layer(client, "private/img") == images.simple.layers[0]
    assert str(token_server.seen[before]["authorization"]).startswith("Basic ")


def test_bearer_anonymous_denied_private(token_pushed: str, clean_env: Path) -> None:
    with (
        RegistryClient(token_pushed, retries=0) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.get_manifest("private/img", "v1")
    assert info.value.message.startswith(f"authentication required by registry {token_pushed}")
    assert "rootless login" in str(info.value.hint)


def test_bearer_bad_password(token_pushed: str, clean_env: Path) -> None:
    creds = Credentials(TOKEN_USER, "wrong")
    with (
        RegistryClient(token_pushed, credentials=creds, retries=0) as client,
        pytest.raises(RegistryError) as info,
    ):
        client.get_manifest("private/img", "v1")
    assert info.value.message == (
        f"authentication to registry {token_pushed} failed: incorrect username or password"
    )


# ---------------------------------------------------------------- check_login


def test_check_login_basic(basic_pushed: str, clean_env: Path) -> None:
    with RegistryClient(basic_pushed, credentials=Credentials(USER, PASSWORD)) as c:
        c.check_login()
    with (
        RegistryClient(basic_pushed, credentials=Credentials(USER, "bad")) as c,
        pytest.raises(AuthenticationError, match="failed"),
    ):
        c.check_login()


def test_check_login_token(token_pushed: str, clean_env: Path) -> None:
    with RegistryClient(token_pushed, credentials=Credentials(TOKEN_USER, TOKEN_PASSWORD)) as c:
        c.check_login()
    with (
        RegistryClient(token_pushed, credentials=Credentials(TOKEN_USER, "bad")) as c,
        pytest.raises(AuthenticationError, match="incorrect username or password"),
    ):
        c.check_login()


def test_check_login_open_registry(plain_registry: Any, clean_env: Path) -> None:
    with RegistryClient(plain_registry.host, credentials=Credentials("x", "y")) as c:
        c.check_login()
