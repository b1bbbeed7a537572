"""Fuzz manifest, index and image config parsing (rootless/image/manifest.py).

Input: one selector byte, then the document (what a registry or an archive
sends). Selector % 4: 0-1 `parse_manifest` (with a Content-Type picked by the
selector's upper bits), 2 `parse_image_config`, 3 `parse_platform` of the text.
Invariants: only ManifestError escapes the parsers (UsageError for
`parse_platform`), and its message is one line; a parsed manifest or index
survives `manifest_to_json` and parsing again unchanged; platform selection on
an index raises nothing but ManifestError.
"""

from __future__ import annotations

import os
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # fuzzlib; appended: rootless stays first
import fuzzlib

with fuzzlib.instrumented(__name__ == "__main__"):
    from rootless.errors import ManifestError, UsageError
    from rootless.image import manifest as m
    from rootless.image.types import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Index, Platform

CONTENT_TYPES = (None, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/json; charset=utf-8",
                 "text/plain", "application/vnd.docker.distribution.manifest.v1+prettyjws", "")
WANTED = (Platform("linux", "amd64"), Platform("linux", "arm", "v7"), Platform("linux", "arm64", "v8"),
          Platform("windows", "amd64"))


def _one_line(exc: BaseException) -> None:
    assert "\n" not in str(exc), str(exc)


def _manifest(doc: bytes, content_type: str | None) -> None:
    try:
        parsed = m.parse_manifest(doc, content_type, context="fuzz")
    except ManifestError as exc:
        _one_line(exc)
        return
    again = m.parse_manifest(m.manifest_to_json(parsed), context="fuzz again")
    assert again == parsed, (parsed, again)
    if isinstance(parsed, Index):
        m.available_platforms(parsed)
        for want in WANTED:
            m.match_platform(parsed, want)
            try:
                m.select_platform(parsed, want)
            except ManifestError as exc:
                _one_line(exc)


def _config(doc: bytes) -> None:
    try:
        config = m.parse_image_config(doc, context="fuzz")
    except ManifestError as exc:
        _one_line(exc)
        return
    assert isinstance(config.platform, Platform)


def _platform(doc: bytes) -> None:
    try:
        p = m.parse_platform(doc.decode("utf-8", "surrogateescape"))
    except UsageError as exc:
        _one_line(exc)
        return
    assert m.parse_platform(str(p)) == p, p


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, doc = data[0], data[1:]
    kind = selector % 4
    if kind in (0, 1):
        _manifest(doc, CONTENT_TYPES[(selector >> 2) % len(CONTENT_TYPES)])
    elif kind == 2:
        _config(doc)
    else:
        _platform(doc)


if __name__ == "__main__":
    fuzzlib.main(test_one_input)
