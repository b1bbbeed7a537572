"""rootless: a daemonless container runtime for unprivileged users."""

from rootless._version import __version__

__all__ = ["__version__"]
