"""rootless.image.changes: Dockerfile-style --change instructions."""

from __future__ import annotations

import pytest

from rootless.errors import UsageError
from rootless.image.changes import apply_changes


def test_cmd_and_entrypoint_forms() -> None:
    out = apply_changes({}, ['CMD ["a", "b"]', "ENTRYPOINT echo $HOME", "CMD=/bin/sh"])
    assert out["Entrypoint"] == ["/bin/sh", "-c", "echo $HOME"]
    assert out["Cmd"] == ["/bin/sh", "-c", "/bin/sh"]
    assert apply_changes({}, ["cmd [not json"])["Cmd"] == ["/bin/sh", "-c", "[not json"]


def test_env_label_and_substitution() -> None:
    base = {"Env": ["PATH=/bin", "A=old"]}
    out = apply_changes(base, ['ENV A=1 B="two words"', "ENV C ${B:-x} and $A", "LABEL l=${A} m=\"q r\""])
    assert out["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=two words and 1"]
    assert out["Labels"] == {"l": "1", "m": "q r"}
    assert base == {"Env": ["PATH=/bin", "A=old"]}, "input untouched"
    assert apply_changes({}, ["ENV X=${NOPE:+set}${NOPE:-unset}"])["Env"] == ["X=unset"]


def test_paths_ports_volumes_user_signal() -> None:
    out = apply_changes({}, ["WORKDIR /a", "WORKDIR b/../c", "EXPOSE 80 53/udp 8000-8001",
                             'VOLUME ["/v1"]', "VOLUME /v2 /v3", "USER app:app", "STOPSIGNAL SIGTERM"])  # fmt: skip
    assert out["WorkingDir"] == "/a/c"
    assert set(out["ExposedPorts"]) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}  # type: ignore[arg-type]
    assert set(out["Volumes"]) == {"/v1", "/v2", "/v3"}  # type: ignore[arg-type]
    assert out["User"] == "app:app" and out["StopSignal"] == "SIGTERM"


@pytest.mark.parametrize(
    ("change", "words"),
    [("RUN true", "unknown instruction RUN"), ("EXPOSE 0", "bad port"), ("EXPOSE 9-3", "bad port range"),
     ("ENV", "expected INSTRUCTION VALUE"), ("LABEL novalue", "KEY=VALUE"), ("USER a b", "one name"),
     ("STOPSIGNAL kill me", "bad signal"), ("ENV K", "needs a value"), ('LABEL a="open', "quotation")],
)  # fmt: skip
def test_bad_changes(change: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        apply_changes({}, [change])
