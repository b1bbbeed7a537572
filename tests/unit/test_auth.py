"""Credentials files, WWW-Authenticate parsing, the token dance (fake transport),
and the insecure-registry policy. Pure: no network."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import urllib.parse
from pathlib import Path

import pytest

from rootless.errors import RegistryError
from rootless.image.auth import (
    AuthenticationError,
    Authenticator,
    Challenge,
    Credentials,
    CredentialStore,
    auth_file_path,
    docker_config_path,
    normalize_key,
    parse_challenges,
    remove_login,
    store_login,
)
from rootless.image.insecure import InsecurePolicy, is_loopback, split_host_port
from rootless.image.transport import Headers, Request, Response


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------- file locations


def test_auth_file_path_prefers_env_then_runtime_dir() -> None:
    assert auth_file_path({"REGISTRY_AUTH_FILE": "/x/a.json"}) == "/x/a.json"
    assert auth_file_path({"XDG_RUNTIME_DIR": "/run/user/5"}) == "/run/user/5/containers/auth.json"
    assert auth_file_path({"HOME": "/h"}) == "/h/.config/containers/auth.json"


def test_docker_config_path() -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/d"}) == "/d/config.json"
    assert docker_config_path({"HOME": "/h"}) == "/h/.docker/config.json"


@pytest.mark.parametrize(
    ("key", "norm"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("Docker.IO", "docker.io"),
        ("http://LOCALHOST:5000", "localhost:5000"),
        ("quay.io/org/repo", "quay.io/org/repo"),
        ("quay.io/", "quay.io"),
    ],
)
def test_normalize_key(key: str, norm: str) -> None:
    assert normalize_key(key) == norm


# ---------------------------------------------------------------- lookup


def write_json(path: Path, data: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_lookup_docker_config_base64(tmp_path: Path) -> None:
    docker = write_json(
        tmp_path / "config.json",
        {"auths": {"https://index.docker.io/v1/": {"auth": b64("bob:s3:cret")}}},
    )
    store = CredentialStore((str(tmp_path / "missing.json"), docker))
    assert store.lookup("registry-1.docker.io") == Credentials("bob", "s3:cret")
    assert store.lookup("docker.io", "library/centos") == Credentials("bob", "s3:cret")
    assert store.lookup("quay.io") is None


def test_auth_json_wins_and_most_specific_key(tmp_path: Path) -> None:
    podman = write_json(
        tmp_path / "auth.json",
        {
            "auths": {
                "quay.io": {"auth": b64("general:1")},
                "quay.io/org": {"auth": b64("org:2")},
                "quay.io/org/app": {"username": "app", "password": "3"},
            }
        },
    )
    docker = write_json(tmp_path / "config.json", {"auths": {"quay.io": {"auth": b64("d:4")}}})
    store = CredentialStore((podman, docker))
    assert store.lookup("quay.io", "org/app") == Credentials("app", "3")
    assert store.lookup("quay.io", "org/other") == Credentials("org", "2")
    assert store.lookup("quay.io", "else/x") == Credentials("general", "1")
    assert store.lookup("quay.io") == Credentials("general", "1")


def test_identity_token_entry(tmp_path: Path) -> None:
    docker = write_json(tmp_path / "c.json", {"auths": {"r.io": {"identitytoken": "tok"}}})
    assert CredentialStore((docker,)).lookup("r.io") == Credentials(identity_token="tok")


def test_broken_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(RegistryError, match="cannot read credentials file"):
        CredentialStore((str(bad),)).lookup("x.io")
    weird = write_json(tmp_path / "w.json", {"auths": {"x.io": {"auth": b64("nocolon")}}})
    assert CredentialStore((weird,)).lookup("x.io") is None


def test_from_environment_reads_both(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    write_json(tmp_path / ".docker" / "config.json", {"auths": {"a.io": {"auth": b64("a:1")}}})
    store_login("b.io", "b", "2", auth_file_path(env))
    store = CredentialStore.from_environment(env)
    assert store.lookup("a.io") == Credentials("a", "1")
    assert store.lookup("b.io") == Credentials("b", "2")


def test_credentials_repr_hides_password() -> None:
    assert "hunter2" not in repr(Credentials("u", "hunter2"))


# ---------------------------------------------------------------- login / logout


def test_store_login_private_and_merging(tmp_path: Path) -> None:
    path = str(tmp_path / "containers" / "auth.json")
    write_json(Path(path), {"auths": {"other.io": {"auth": b64("o:o")}}, "extra": 1})
    store_login("https://Quay.io", "me", "pw", path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(Path(path).read_text())
    assert data["extra"] == 1
    assert data["auths"]["quay.io"] == {"auth": b64("me:pw")}
    assert "other.io" in data["auths"]
    store_login("quay.io", "me", "new", path)
    assert CredentialStore((path,)).lookup("quay.io") == Credentials("me", "new")
    assert remove_login("quay.io", path)
    assert not remove_login("quay.io", path)
    assert CredentialStore((path,)).lookup("quay.io") is None
    assert [p.name for p in Path(path).parent.iterdir()] == ["auth.json"]


# ---------------------------------------------------------------- challenges


def test_parse_bearer_challenge_with_commas_in_scope() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    (c,) = parse_challenges(header)
    assert c.scheme == "bearer"
    assert dict(c.params) == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:samalba/my-app:pull,push",
    }


def test_parse_several_challenges_and_escapes() -> None:
    header = (
        'Basic realm="a \\"quoted\\" realm", Bearer realm="https://t/x", error=insufficient_scope'
    )
    basic, bearer = parse_challenges(header)
    assert basic == Challenge("basic", {"realm": 'a "quoted" realm'})
    assert bearer.scheme == "bearer"
    assert bearer.params["error"] == "insufficient_scope"


def test_parse_challenge_without_params() -> None:
    assert parse_challenges("Negotiate") == [Challenge("negotiate", {})]
    assert parse_challenges("") == []


# ---------------------------------------------------------------- token dance


class FakeTransport:
    """Answers token requests from a table; records what was sent."""

    def __init__(self, status: int = 200, body: object = None) -> None:
        self.requests: list[Request] = []
        self.status = status
        self.body = body if body is not None else {"token": "T1", "expires_in": 300}

    def send(self, request: Request) -> Response:
        self.requests.append(request)
        data = json.dumps(self.body).encode()
        return Response(self.status, "x", Headers(), request.url, io.BytesIO(data))

    def close(self) -> None:
        pass


BEARER = 'Bearer realm="https://auth.example/token",service="reg"'


def test_bearer_token_with_basic_creds_and_cache() -> None:
    fake = FakeTransport()
    auth = Authenticator(fake, "reg.example", Credentials("u", "p"))
    assert auth.authorization(("repository:a:pull",)) is None  # no challenge yet
    assert auth.learn(BEARER)
    assert auth.authorization(("repository:a:pull",)) == "Bearer T1"
    assert auth.authorization(("repository:a:pull",)) == "Bearer T1"
    assert len(fake.requests) == 1
    req = fake.requests[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)
    assert query == {"service": ["reg"], "scope": ["repository:a:pull"], "account": ["u"]}
    assert req.headers.get("Authorization") == Credentials("u", "p").basic()
    auth.authorization(("repository:b:pull", "repository:a:pull,push"))
    assert len(fake.requests) == 2
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(fake.requests[1].url).query)["scope"] == [
        "repository:a:pull,push",
        "repository:b:pull",
    ]
    auth.forget(("repository:a:pull",))
    auth.authorization(("repository:a:pull",))
    assert len(fake.requests) == 3


def test_anonymous_bearer_and_access_token_field() -> None:
    fake = FakeTransport(body={"access_token": "AT"})
    auth = Authenticator(fake, "reg.example", None)
    auth.learn(BEARER)
    assert auth.authorization(("repository:a:pull",)) == "Bearer AT"
    assert fake.requests[0].headers.get("Authorization") is None


def test_identity_token_uses_oauth_refresh() -> None:
    fake = FakeTransport(body={"access_token": "AT"})
    auth = Authenticator(fake, "reg.example", Credentials(identity_token="refresh"))
    auth.learn(BEARER)
    assert auth.authorization(("repository:a:pull",)) == "Bearer AT"
    req = fake.requests[0]
    assert req.method == "POST"
    assert isinstance(req.body, bytes)
    form = urllib.parse.parse_qs(req.body.decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["refresh"]


def test_basic_challenge_sends_credentials() -> None:
    auth = Authenticator(FakeTransport(), "r", Credentials("u", "p"))
    auth.learn('Basic realm="r"')
    assert auth.authorization(()) == "Basic " + b64("u:p")
    assert Authenticator(FakeTransport(), "r", None).authorization(()) is None


def test_token_service_refusal_is_auth_error() -> None:
    fake = FakeTransport(status=401, body={"details": "incorrect username or password"})
    auth = Authenticator(fake, "reg.example", Credentials("u", "bad"))
    auth.learn(BEARER)
    with pytest.raises(AuthenticationError) as info:
        auth.authorization(("repository:a:pull",))
    assert info.value.message == (
        "authentication to registry reg.example failed: incorrect username or password"
    )
    assert info.value.hint and "rootless login reg.example" in info.value.hint


def test_token_without_token_field() -> None:
    auth = Authenticator(FakeTransport(body={"nothing": 1}), "r", None)
    auth.learn(BEARER)
    with pytest.raises(RegistryError, match="returned no token"):
        auth.authorization(())


def test_bad_realm() -> None:
    auth = Authenticator(FakeTransport(), "r", None)
    auth.learn('Bearer realm="/relative"')
    with pytest.raises(RegistryError, match="without a usable realm"):
        auth.authorization(())


# ---------------------------------------------------------------- insecure policy


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_split_host_port() -> None:
    assert split_host_port("[::1]:5000") == ("::1", 5000)
    assert split_host_port("Host:80") == ("host", 80)
    assert split_host_port("host") == ("host", None)


def test_insecure_policy_sources(tmp_path: Path) -> None:
    conf = tmp_path / "rootless" / "registries.conf"
    conf.parent.mkdir()
    conf.write_text(
        '[[registry]]\nlocation = "conf.io:5000/ns"\ninsecure = true\n'
        '[[registry]]\nlocation = "secure.io"\ninsecure = false\n'
    )
    env = {
        "XDG_CONFIG_HOME": str(tmp_path),
        "ROOTLESS_INSECURE_REGISTRIES": "env.io, envport.io:81",
    }
    policy = InsecurePolicy.from_environment(env)
    assert policy.is_insecure("conf.io:5000")
    assert not policy.is_insecure("conf.io:5001")
    assert policy.is_insecure("env.io:443")
    assert policy.is_insecure("envport.io:81")
    assert not policy.is_insecure("envport.io")
    assert not policy.is_insecure("secure.io")
    assert policy.is_insecure("127.0.0.1:9")
    assert policy.is_insecure("docker.io", tls_verify=False)
    assert not policy.is_insecure("127.0.0.1:9", tls_verify=True)


def test_broken_registries_conf_is_ignored(tmp_path: Path) -> None:
    conf = tmp_path / "rootless" / "registries.conf"
    conf.parent.mkdir()
    conf.write_text("[[registry]\n")
    policy = InsecurePolicy.from_environment({"XDG_CONFIG_HOME": str(tmp_path)})
    assert not policy.is_insecure("x.io")


def test_ca_files_from_certs_d(tmp_path: Path) -> None:
    from rootless.image.insecure import ca_files_for, certs_d_dirs

    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    dirs = certs_d_dirs("reg.lab:5000", env)
    assert dirs[0] == str(tmp_path / "containers" / "certs.d" / "reg.lab:5000")
    assert dirs[1:] == ["/etc/containers/certs.d/reg.lab:5000", "/etc/docker/certs.d/reg.lab:5000"]
    Path(dirs[0]).mkdir(parents=True)
    (Path(dirs[0]) / "ca.crt").write_text("x")
    (Path(dirs[0]) / "client.cert").write_text("x")
    assert ca_files_for("reg.lab:5000", env) == (str(Path(dirs[0]) / "ca.crt"),)
