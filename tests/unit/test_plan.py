"""Run plans, the Python half (rootless/runtime/plan.py): the key material the
launcher compares, the file's records, and the cap on how many plans are kept.
The launcher's half is tested end to end in tests/integration/test_run_plan.py."""

from __future__ import annotations

import os
import struct

from rootless.runtime import plan


def records(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(plan.MAGIC)
    out, pos = [], len(plan.MAGIC)
    while pos < len(data):
        tag, (length,) = data[pos : pos + 1], struct.unpack("<I", data[pos + 1 : pos + 5])
        out.append((tag, data[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    assert pos == len(data)
    return out


def test_key_material_is_user_cwd_and_argv(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLOR", "red")
    key = plan.key_material(["run", "--rm", "x"])
    assert key.split(b"\0") == [b"rootless-plan 2", b"%d:%d" % (os.getuid(), os.getgid()),
                                 os.fsencode(str(tmp_path)), b"3", b"run", b"--rm", b"x", b""]
    assert plan.key_material(["run", "--rm", "x"], 2).split(b"\0")[3:] == [b"2+", b"run", b"--rm", b""]
    assert plan.fnv1a64(b"") == 0xCBF29CE484222325 and plan.fnv1a64(b"a") == 0xAF63DC4C8601EC8C


def test_the_environment_read_is_recorded(monkeypatch):
    monkeypatch.setenv("SEEN", "1")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    saved = os.environ.__class__
    plan.RecordingEnviron.reads, plan.RecordingEnviron.whole, plan.RecordingEnviron.written = {}, False, set()
    os.environ.__class__ = plan.RecordingEnviron
    try:
        assert os.environ.get("SEEN") == "1" and "UNSET_ONE" not in os.environ
        os.environ["MINE"] = "x"  # set by the CLI itself: not a dependency
        assert os.environ["MINE"] == "x"
        assert plan.RecordingEnviron.reads == {"SEEN": "1", "UNSET_ONE": None}
        assert not plan.RecordingEnviron.whole
        dict(os.environ)
        assert plan.RecordingEnviron.whole
    finally:
        os.environ.__class__ = saved
        os.environ.pop("MINE", None)


def test_take_request_consumes_the_variable(monkeypatch):
    monkeypatch.setenv(plan.OUT_ENV, "/tmp/somewhere/plans/0123")
    saved = os.environ.__class__
    try:
        req = plan.take_request(["run"])
        assert req is not None and req.path == "/tmp/somewhere/plans/0123"
        assert plan.OUT_ENV not in os.environ
        assert plan.take_request(["run"]) is None
    finally:
        os.environ.__class__ = saved


def test_encode_writes_every_part(tmp_path):
    from rootless.native.spawn import OP_BIND, MountOp, SpawnConfig
    from rootless.runtime.idmap import IdMapping

    cfg = SpawnConfig("/r", ["sh", "-c", "x"], ["A=1"])
    cfg.mounts = [MountOp(OP_BIND, "/data", source="/host", mflags=1)]
    cfg.uid, cfg.gid, cfg.groups, cfg.hostname, cfg.cwd, cfg.sflags = 5, 6, [7], "h", "/w", 32
    mapping = IdMapping("single", [(0, 1000, 1)], [(0, 1000, 1)], False, 0, 0)
    (tmp_path / "f").write_text("x")
    data = plan.encode(b"KEY", cfg, mapping, True, [str(tmp_path / "f"), plan.IDENTITY + str(tmp_path),
                                                   str(tmp_path / "absent")], None)
    recs = records(data)
    tags = [t for t, _ in recs]
    assert tags[0] == b"V" and tags[-1] == b"Z" and (b"K", b"KEY") in recs
    assert [v for t, v in recs if t == b"A"] == [b"sh\0", b"-c\0", b"x\0"]
    stamps = [struct.unpack("<7q", v[:56])[0] for t, v in recs if t == b"S"]
    assert stamps == [1, 2, 0]
    [mount] = [v for t, v in recs if t == b"M"]
    assert struct.unpack("<4q", mount[:32]) == (OP_BIND, 1, 0, 0) and mount[32:] == b"\1/host\0\1/data\0\0\0"
    assert (b"I", struct.pack("<2q", 0, 1)) in recs  # maps written directly, setgroups denied
    assert (b"F", struct.pack("<2q", 32, 1)) in recs


def test_write_is_private_and_trims_the_oldest(tmp_path):
    plans = tmp_path / "run" / "plans"
    plans.mkdir(parents=True)
    for i in range(plan.MAX_PLANS + plan.MAX_PLANS // 8):
        p = plans / f"{i:016x}"
        p.write_bytes(b"old")
        os.utime(p, ns=(i * 10**9, i * 10**9))
    plan.write(plan.Request(str(plans / "ffffffffffffffff"), b"k"), b"new plan")
    left = sorted(os.listdir(plans))
    assert len(left) == plan.MAX_PLANS
    assert "ffffffffffffffff" in left and f"{0:016x}" not in left
    st = os.stat(plans / "ffffffffffffffff")
    assert st.st_mode & 0o777 == 0o600 and (plans / "ffffffffffffffff").read_bytes() == b"new plan"
