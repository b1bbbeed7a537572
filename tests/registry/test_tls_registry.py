"""Verified TLS against the shared `registry_auth` fixture (tests/conftest.py):
docker-registry with a self-signed certificate and htpasswd basic auth."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import RegistryError
from rootless.image.auth import Credentials
from rootless.image.registry import RegistryClient


@pytest.fixture()
def tls_auth_registry(request: pytest.FixtureRequest) -> Any:
    try:
        reg = request.getfixturevalue("registry_auth")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py provides no registry_auth fixture")
    if not reg.tls or not reg.ca_cert:
        pytest.skip("registry_auth is not a TLS registry")
    return reg


def test_verified_tls_with_explicit_ca(tls_auth_registry: Any, clean_env: Path) -> None:
    creds = Credentials(tls_auth_registry.username, tls_auth_registry.password)
    with RegistryClient(
        tls_auth_registry.host,
        tls_verify=True,
        ca_certs=[tls_auth_registry.ca_cert],
        credentials=creds,
        retries=0,
    ) as c:
        c.check_login()
        assert c.base_url == f"https://{tls_auth_registry.host}"
        data = b"over verified tls"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        c.upload_blob("rlimage/tls", digest, data)
        with c.open_blob("rlimage/tls", digest, len(data)) as reader:
            assert reader.read() == data


def test_ca_from_certs_d(tls_auth_registry: Any, clean_env: Path, monkeypatch: Any) -> None:
    config = clean_env / "config"
    certs = config / "containers" / "certs.d" / tls_auth_registry.host
    certs.mkdir(parents=True)
    shutil.copy(tls_auth_registry.ca_cert, certs / "ca.crt")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    creds = Credentials(tls_auth_registry.username, tls_auth_registry.password)
    with RegistryClient(tls_auth_registry.host, tls_verify=True, credentials=creds) as c:
        c.check_login()


def test_untrusted_certificate(tls_auth_registry: Any, clean_env: Path) -> None:
    with (
        RegistryClient(tls_auth_registry.host, tls_verify=True, ca_certs=[], retries=0) as c,
        pytest.raises(RegistryError) as info,
    ):
        c.ping()
    assert "could not be verified" in info.value.message
    assert "--tls-verify=false" in str(info.value.hint)
