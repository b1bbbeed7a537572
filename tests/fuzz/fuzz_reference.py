"""Fuzz image reference parsing (rootless/image/reference.py).

Input: the reference text (UTF-8; undecodable bytes kept as surrogates, as argv
gives them). Invariants: only InvalidReferenceError escapes `parse`, `with_tag`
and `with_digest`; a parsed reference is a fixed point: parsing its full form
(`str`) or docker's short form (`familiar`) gives it back.
"""

from __future__ import annotations

import os
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # fuzzlib; appended: rootless stays first
import fuzzlib

with fuzzlib.instrumented(__name__ == "__main__"):
    from rootless.errors import InvalidReferenceError
    from rootless.image.reference import Reference

DIGEST = "sha256:" + "a" * 64


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError as exc:
        assert exc.message and "\n" not in exc.message, exc.message
        return
    assert Reference.parse(str(ref)) == ref, (text, str(ref))
    assert Reference.parse(ref.familiar()) == ref, (text, ref.familiar())
    assert ref.registry and ref.repository and ref.identifier
    # a second part of the input as a tag
    with fuzzlib.allowed(InvalidReferenceError):
        tagged = ref.with_tag(text.rpartition(":")[2])
        assert Reference.parse(str(tagged)) == tagged
    with fuzzlib.allowed(InvalidReferenceError):
        ref.with_digest(text.rpartition("@")[2])
    assert ref.with_digest(DIGEST).digest == DIGEST


if __name__ == "__main__":
    fuzzlib.main(test_one_input)
