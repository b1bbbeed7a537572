"""Error hierarchy. Every failure a user can cause is one of these; the CLI prints
`rootless: <message>` (plus the hint on a second line when there is one) and exits
with the error's `exit_code` (docker's conventions: 125 runtime, 126 cannot exec,
127 not found).

    RootlessError
    ├── UsageError                 bad command-line input (exit 125)
    ├── UnsupportedHostError       the host lacks a kernel feature (user namespaces...)
    ├── ContainerError
    │   ├── ExecNotFoundError      exit 127
    │   └── ExecPermissionError    exit 126
    ├── ImageError
    │   ├── InvalidReferenceError  invalid image reference
    │   ├── RegistryError          the registry said no, or could not be reached
    │   ├── ManifestError          unusable manifest (schema1, no platform...)
    │   └── DigestMismatchError    content does not match its digest or size
    └── StoreError
        └── LockTimeoutError
"""

from __future__ import annotations


class RootlessError(Exception):
    """Base class: a failure with a one-line message and an optional hint."""

    exit_code = 125

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(RootlessError):
    """The command line is wrong."""


class UnsupportedHostError(RootlessError):
    """The host does not allow something rootless needs."""


class ContainerError(RootlessError):
    """A container could not be created, started or managed."""


class ExecNotFoundError(ContainerError):
    """The container's command does not exist."""

    exit_code = 127


class ExecPermissionError(ContainerError):
    """The container's command exists but cannot be executed."""

    exit_code = 126


class ImageError(RootlessError):
    """An image could not be found, fetched or understood."""


class InvalidReferenceError(ImageError):
    """An image reference does not parse."""


class RegistryError(ImageError):
    """A registry refused a request or could not be reached."""


class ManifestError(ImageError):
    """A manifest or index is unusable."""


class DigestMismatchError(ImageError):
    """Content does not match its expected digest or size."""


class StoreError(RootlessError):
    """The local store is unusable."""


class LockTimeoutError(StoreError):
    """A lock could not be taken in time."""
