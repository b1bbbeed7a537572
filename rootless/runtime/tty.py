"""Relay a container's pty to this terminal: raw mode, window size, EOF."""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def window_size(fd: int) -> tuple[int, int]:
    """The terminal's size, or 24x80 when there is none (a detached container):
    a 0x0 terminal makes some programs (bash's readline) wait instead of prompting."""
    try:
        size = os.get_terminal_size(fd)
        if size.lines and size.columns:
            return size.lines, size.columns
    except OSError:
        pass
    return 24, 80


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        data = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, data)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class RawMode:
    """Put a terminal in raw mode for the duration of a with-block."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> RawMode:
        import termios

        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            mode = termios.tcgetattr(self.fd)
            mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
            mode[1] &= ~termios.OPOST
            mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
            mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)  # keep typed-ahead input
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def relay(master: int, interactive: bool) -> None:
    """Copy stdin -> master (when interactive) and master -> stdout until the pty closes."""
    import _signal  # type: ignore[import-not-found]  # `signal` would import enum (4 ms)

    term_fd = 0 if os.isatty(0) else (1 if os.isatty(1) else -1)
    if term_fd >= 0:
        _copy_winsize(term_fd, master)
        _signal.signal(_signal.SIGWINCH, lambda *_: _copy_winsize(term_fd, master))
    reading_stdin = interactive
    with RawMode(0) if interactive else _Nothing():
        while True:
            fds = [master, 0] if reading_stdin else [master]
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed, the container is gone
                    break
                if not data:
                    break
                _write_all(1, data)
            if reading_stdin and 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    reading_stdin = False
                    _write_all(master, b"\x04")
    if term_fd >= 0:
        _signal.signal(_signal.SIGWINCH, _signal.SIG_DFL)


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
