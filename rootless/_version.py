"""The package version; the C core is built with the same string and checked at import."""

__version__ = "0.1.0"
