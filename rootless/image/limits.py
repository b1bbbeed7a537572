"""Size limits against hostile images: decompression bombs and huge sparse files.

A layer is small on the wire and may inflate to anything: a gzip stream of zeros
inflates about 1000 times, and a tar header can declare a sparse file of an
exabyte with no data at all. Every layer that `pull`, `load` and `import` unpack
is checked against:

    ROOTLESS_MAX_LAYER_SIZE    the uncompressed tar stream of one layer, and the
                               apparent size of all its files together
                               (default 64 GiB)
    ROOTLESS_MAX_FILE_SIZE     the apparent size of one file, holes of a sparse
                               file included (default: the layer limit)
    ROOTLESS_MAX_ARCHIVE_SIZE  a compressed archive given to `load`, which is
                               decompressed to a temporary file before it is read
                               (default 256 GiB)

Values are bytes, or a number with a K, M, G or T suffix (powers of 1024;
"GiB", "G" and "GB" mean the same); 0 or "none" turns a limit off. A layer over a
limit fails with one line that names the layer, the limit and its variable, and
the partial layer is deleted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rootless.errors import ImageError, UsageError

GIB = 1 << 30
DEFAULT_MAX_LAYER_SIZE = 64 * GIB
DEFAULT_MAX_ARCHIVE_SIZE = 256 * GIB
LAYER_VAR = "ROOTLESS_MAX_LAYER_SIZE"
FILE_VAR = "ROOTLESS_MAX_FILE_SIZE"
ARCHIVE_VAR = "ROOTLESS_MAX_ARCHIVE_SIZE"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class LimitExceededError(ImageError):
    """A layer or archive is larger than a configured limit."""


def parse_size(text: str, variable: str) -> int:
    """Bytes from "64G", "512MiB", "1000000"; 0 for "0" or "none" (no limit)."""
    if text.strip().lower() in ("none", "unlimited"):
        return 0
    match = _SIZE_RE.match(text)
    if match is None:
        raise UsageError(
            f"invalid {variable} {text!r}: a size in bytes, or with K, M, G or T (e.g. 64G)"
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def human(n: int) -> str:
    """A size for messages: "64 GiB", "1.5 MiB", "512 bytes"."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class LayerLimits:
    """The limits in force (0: none)."""

    max_layer_size: int = DEFAULT_MAX_LAYER_SIZE
    max_file_size: int = DEFAULT_MAX_LAYER_SIZE
    max_archive_size: int = DEFAULT_MAX_ARCHIVE_SIZE

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> LayerLimits:
        env = os.environ if env is None else env
        layer = _read(env, LAYER_VAR, DEFAULT_MAX_LAYER_SIZE)
        return cls(
            max_layer_size=layer,
            max_file_size=_read(env, FILE_VAR, layer),
            max_archive_size=_read(env, ARCHIVE_VAR, DEFAULT_MAX_ARCHIVE_SIZE),
        )

    def check_layer_stream(self, size: int, what: str) -> None:
        """Raise when `size` uncompressed bytes of a layer exceed the layer limit."""
        if self.max_layer_size and size > self.max_layer_size:
            raise LimitExceededError(
                f"{what}: the uncompressed layer is over the limit of "
                f"{human(self.max_layer_size)} ({LAYER_VAR})",
                hint="a decompression bomb, or a layer larger than this host allows",
            )

    def check_archive(self, size: int, what: str) -> None:
        if self.max_archive_size and size > self.max_archive_size:
            raise LimitExceededError(
                f"{what}: the decompressed archive is over the limit of "
                f"{human(self.max_archive_size)} ({ARCHIVE_VAR})"
            )

    def unpack_kwargs(self) -> dict[str, int]:
        """The C unpacker's limits (LayerStore.unpack keywords)."""
        return {"max_file_size": self.max_file_size, "max_total_size": self.max_layer_size}


def _read(env: Mapping[str, str], variable: str, default: int) -> int:
    text = env.get(variable)
    if text is None or not text.strip():
        return default
    return parse_size(text, variable)


def unpack_limit_error(what: str, exc: OSError) -> LimitExceededError:
    """The error for the unpacker's EFBIG (a file, or the files together, over a limit)."""
    detail = str(getattr(exc, "what", "") or exc).removeprefix("untar: ")
    variable = FILE_VAR if "per file" in detail else LAYER_VAR
    return LimitExceededError(f"{what}: {detail} ({variable})")


__all__ = [
    "ARCHIVE_VAR",
    "FILE_VAR",
    "LAYER_VAR",
    "LayerLimits",
    "LimitExceededError",
    "human",
    "parse_size",
    "unpack_limit_error",
]
