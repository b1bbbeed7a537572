"""rootless-monitor on its own (no namespaces): stdio relay, attach protocol,
hostile attach clients, log and exit files. A plain shell child stands in for
the container. scripts/sanitize.sh runs this against the ASan/UBSan build of
the monitor; in the ordinary suite it checks the installed one.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from rootless.libexec import MONITOR

# The "container": waits for one input line, answers on stdout and stderr,
# then writes more than the monitor's buffers hold, and exits 7.
CONTAINER = "read line; echo \"got $line\"; echo oops >&2; head -c 300000 /dev/zero | tr '\\0' x; exit 7"


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def read_frames(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    """Frames until the exit frame ('X') or EOF."""
    buf = b""
    frames: list[tuple[bytes, bytes]] = []
    while True:
        while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">I", buf[1:5])[0]:
            n = struct.unpack(">I", buf[1:5])[0]
            frames.append((buf[:1], buf[5 : 5 + n]))
            buf = buf[5 + n :]
            if frames[-1][0] == b"X":
                return frames
        data = sock.recv(65536)
        if not data:
            return frames
        buf += data


@pytest.fixture
def monitor(tmp_path: Path):  # type: ignore[no-untyped-def]
    assert os.access(MONITOR, os.X_OK), f"{MONITOR} is not built"
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(str(tmp_path / "attach.sock"))
    listen.listen(8)
    ours, theirs = socket.socketpair()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    monitor_ends = (listen.fileno(), theirs.fileno(), in_w, out_r, err_r)
    container_ends = (in_r, out_w, err_w)
    # bash backgrounds the container and then becomes the monitor (exec keeps
    # the pid), so the container is the monitor's child, as in lifecycle.py.
    close_theirs = " ".join(f"{fd}<&-" for fd in monitor_ends)
    close_ours = " ".join(f"{fd}<&-" for fd in container_ends)
    script = (f"(exec {close_theirs}; {CONTAINER}) <&{in_r} >&{out_w} 2>&{err_w} & "
              f'exec {close_ours} "$0" --pid $! "$@"')
    argv = ["/bin/bash", "-c", script, MONITOR,
            "--socket-fd", str(listen.fileno()), "--client-fd", str(theirs.fileno()),
            "--log", str(tmp_path / "log"), "--exit-file", str(tmp_path / "exit"),
            "--stdin-fd", str(in_w), "--stdout-fd", str(out_r), "--stderr-fd", str(err_r)]
    stderr = open(tmp_path / "monitor.stderr", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, pass_fds=monitor_ends + container_ends, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    for fd in (in_r, out_w, err_w, in_w, out_r, err_r):
        os.close(fd)
    theirs.close()
    try:
        yield proc, ours, tmp_path
    finally:
        ours.close()
        listen.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        stderr.close()


def test_monitor_relays_and_records(monitor) -> None:  # type: ignore[no-untyped-def]
    proc, client, tmp = monitor
    # hostile clients first: oversized, truncated and meaningless frames
    for junk in (b"Z\xff\xff\xff\xff", b"I\x00\x00", frame(b"W", b"\x00\x18"), frame(b"Q", b"?" * 70000),
                 frame(b"O", b"a client sending output") + b"\x00" * 4096):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(tmp / "attach.sock"))
        s.sendall(junk)
        s.close()
    # a second attached client, read concurrently (a client that stops reading
    # for a second is dropped by design)
    watcher = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    watcher.connect(str(tmp / "attach.sock"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watching = pool.submit(read_frames, watcher)
        client.sendall(frame(b"I", b"hello\n") + frame(b"E"))
        frames = read_frames(client)
        watched = watching.result(timeout=60)
    assert proc.wait(timeout=60) == 0, (tmp / "monitor.stderr").read_text()
    out = b"".join(p for k, p in frames if k == b"O")
    err = b"".join(p for k, p in frames if k == b"R")
    assert out == b"got hello\n" + b"x" * 300000
    assert err == b"oops\n"
    assert frames[-1] == (b"X", struct.pack(">i", 7))
    watcher.close()
    assert watched and watched[-1] == (b"X", struct.pack(">i", 7))
    assert (tmp / "exit").read_text().split()[0] == "7"
    log = (tmp / "log").read_text()
    assert " stdout F got hello\n" in log and " stderr F oops\n" in log
