"""Minimal leveled logging to stderr (the logging module costs ~5 ms at start-up)."""

from __future__ import annotations

import sys

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
_level = 30
# Set once a warning or error was printed (a run plan is not written then: a run
# from the plan would not print it).
WARNED = False


def set_level(name: str) -> None:
    global _level
    _level = LEVELS[name]


def enabled(name: str) -> bool:
    return LEVELS[name] >= _level


def _emit(level: str, msg: str) -> None:
    global WARNED
    if LEVELS[level] >= 30:
        WARNED = True
    if LEVELS[level] >= _level:
        sys.stderr.write(f"rootless: {level}: {msg}\n")
        sys.stderr.flush()


def debug(msg: str) -> None:
    _emit("debug", msg)


def info(msg: str) -> None:
    _emit("info", msg)


def warning(msg: str) -> None:
    _emit("warning", msg)
