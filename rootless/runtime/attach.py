"""The client side of a container's attach socket (see csrc/monitor/rootless-monitor.c).

Frames: 1 byte type, 4 bytes big-endian length, payload.
  to the monitor:   'I' input, 'E' end of input, 'W' window size (rows u16, cols u16)
  from the monitor: 'O' stdout, 'R' stderr, 'X' exit status (int32)
"""

from __future__ import annotations

import os
import queue
import select
import socket
import struct

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


class Detached(Exception):
    """The user typed the detach keys."""


class Session:
    """Relay this terminal to an attached container until it exits or we detach."""

    def __init__(self, sock: socket.socket, tty: bool, stdin: bool, proxy_pid: int = 0) -> None:
        self.sock = sock
        self.tty = tty
        self.stdin = stdin
        self.proxy_pid = proxy_pid
        self.buf = b""
        self.exit_code: int | None = None
        self._pending_detach = b""
        self._queue: queue.SimpleQueue[bytes | None] | None = None

    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        if self._queue is not None:
            self._queue.put(frame(kind, payload))
            return
        try:
            self.sock.sendall(frame(kind, payload))
        except OSError:
            pass

    def _sender(self) -> None:
        """Send queued frames, so the main loop never stops reading the container's
        output while its input is on the way (which would deadlock with the monitor)."""
        assert self._queue is not None
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                return

    def send_winsize(self) -> None:
        from rootless.runtime.tty import window_size

        rows, cols = window_size(0 if os.isatty(0) else 1)
        if rows and cols:
            self._send(b"W", struct.pack(">HH", rows, cols))

    def _input(self, data: bytes) -> None:
        if self.tty:
            # ctrl-p ctrl-q detaches; a lone ctrl-p is passed on with what follows.
            data = self._pending_detach + data
            self._pending_detach = b""
            idx = data.find(DETACH_KEYS)
            if idx >= 0:
                self._send(b"I", data[:idx])
                raise Detached()
            if data.endswith(DETACH_KEYS[:1]):
                self._pending_detach, data = data[-1:], data[:-1]
        if data:
            self._send(b"I", data)

    def _output(self, data: bytes) -> bool:
        self.buf += data
        while len(self.buf) >= 5:
            kind, length = self.buf[:1], struct.unpack(">I", self.buf[1:5])[0]
            if len(self.buf) < 5 + length:
                break
            payload, self.buf = self.buf[5:5 + length], self.buf[5 + length:]
            if kind == b"O":
                _write_all(1, payload)
            elif kind == b"R":
                _write_all(2, payload)
            elif kind == b"X":
                self.exit_code = struct.unpack(">i", payload)[0]
                return False
        return True

    def run(self) -> int | None:
        """Relay until the container exits (its status) or we detach (None)."""
        import _signal  # type: ignore[import-not-found]  # `signal` would import enum (4 ms)

        from rootless.runtime.tty import RawMode

        if self.tty and os.isatty(0):
            _signal.signal(_signal.SIGWINCH, lambda *_: self.send_winsize())
            self.send_winsize()
        reading = self.stdin
        fd = self.sock.fileno()
        sender = None
        if self.stdin:
            import threading

            self._queue = queue.SimpleQueue()
            sender = threading.Thread(target=self._sender, name="attach-stdin", daemon=True)
            sender.start()
        try:
            with RawMode(0) if (self.tty and self.stdin) else _NoRaw():
                while True:
                    fds = [fd, 0] if reading else [fd]
                    try:
                        ready, _, _ = select.select(fds, [], [])
                    except InterruptedError:
                        continue
                    if fd in ready:
                        data = self.sock.recv(65536)
                        if not data or not self._output(data):
                            break
                    if reading and 0 in ready:
                        data = os.read(0, 65536)
                        if data:
                            self._input(data)
                        else:
                            reading = False
                            if not self.tty:
                                self._send(b"E")
        except Detached:
            return None
        finally:
            if self.tty and os.isatty(0):
                _signal.signal(_signal.SIGWINCH, _signal.SIG_DFL)
        if sender is not None:
            assert self._queue is not None
            self._queue.put(None)
        return self.exit_code


class _NoRaw:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]
