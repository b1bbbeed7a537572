"""A test hook: `ROOTLESS_CRASH_AT=<name>:<n>` kills this process with SIGKILL
the n-th time it reaches the crash point `name` (`*` counts every point,
`layer-*` every point whose name starts with `layer-`), so the crash-safety
tests stop a command exactly between two steps that must stay atomic. Unset
(always, outside tests) it costs one environment lookup.

Points: `blob-synced` (a blob written and fsync'ed, before its rename),
`atomic-write` (index.json, layer.json, a build-cache entry... written,
before its rename), `layer-unpacked` (files and blob in place, before
layer.json), `layer-json`, `layer-link` (before the `incomplete` marker goes),
`layer-removing` (a layer marked and its layer.json gone, before its files),
`blob-deleted`, `gc-layers` (unused blobs swept, layers next), `rmi-removed`
(the index entry gone, before the sweep), `container-removing` (the
container renamed into the trash, before its files go). See docs/testing.md.
"""

from __future__ import annotations

import os

_counts: dict[str, int] = {}


def point(name: str) -> None:
    """Die here when ROOTLESS_CRASH_AT asks for it."""
    spec = os.environ.get("ROOTLESS_CRASH_AT")
    if spec:
        _check(spec, name)


def _check(spec: str, name: str) -> None:
    want, _, nth = spec.rpartition(":")
    if not nth.isdigit():
        return
    if want != name and not (want.endswith("*") and name.startswith(want[:-1])):
        return
    key = want
    _counts[key] = _counts.get(key, 0) + 1
    if _counts[key] == int(nth):
        os.write(2, f"rootless: crash point {name} ({want}:{nth})\n".encode())
        os.kill(os.getpid(), 9)
