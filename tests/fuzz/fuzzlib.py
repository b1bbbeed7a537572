"""Shared plumbing of the fuzz harnesses (tests/fuzz/fuzz_*.py).

A harness is a script with a `test_one_input(data: bytes) -> None` that raises
only on a bug: the project's documented errors are caught inside it, anything
else escapes. `tests/fuzz/test_fuzz.py` imports harnesses to replay the seed
corpus, and runs them as scripts under atheris (`python -P fuzz_x.py
LIBFUZZER-ARGS`), where `instrumented()` turns on atheris' coverage for the
`rootless` modules the harness imports.

ROOTLESS_FUZZ_EXPECT_PACKAGE (set by test_fuzz.py): the directory the fuzzing
subprocess must import `rootless` from, so that it tests the same package as the
pytest run (the installed one under `python -P`, or PYTHONPATH's).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
from collections.abc import Callable, Iterator, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


_fuzzing = False
_features: dict[str, Callable[[], None]] = {}
FEATURES_MAX = 4096


def instrumented(fuzzing: bool) -> contextlib.AbstractContextManager[object]:
    """Around the harness' imports: atheris coverage for rootless.* when fuzzing."""
    global _fuzzing
    if not fuzzing:
        return contextlib.nullcontext()
    _fuzzing = True
    import atheris

    return atheris.instrument_imports(include=["rootless"])  # type: ignore[no-any-return]


def check_package() -> None:
    """Exit 3 unless `rootless` comes from ROOTLESS_FUZZ_EXPECT_PACKAGE (when set)."""
    want = os.environ.get("ROOTLESS_FUZZ_EXPECT_PACKAGE")
    if not want:
        return
    import rootless

    have = os.path.dirname(os.path.realpath(rootless.__file__))
    if have != os.path.realpath(want):
        print(f"fuzz: imported rootless from {have}, expected {want}", file=sys.stderr)
        sys.exit(3)


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run the harness under atheris with the libFuzzer arguments in sys.argv."""
    import atheris

    check_package()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def feature(key: str) -> None:
    """Report an outcome of uninstrumented (C) code as coverage: the first time
    `key` is seen, a fresh instrumented function (its own coverage counter) is
    made for it, so libFuzzer keeps inputs that reach new outcomes (a new error
    of the C unpacker, a member type unpacked). No-op outside fuzzing."""
    if not _fuzzing:
        return
    fn = _features.get(key)
    if fn is None:
        if len(_features) >= FEATURES_MAX:
            return
        import atheris

        fn = atheris.instrument_func(eval("lambda: None"))
        _features[key] = fn
    fn()


def bucket(n: int) -> int:
    """0, 1, 2, 3 (2-3), 4 (4-7), ... : counts as coarse features."""
    return n if n < 2 else n.bit_length() + 1


@contextlib.contextmanager
def allowed(*errors: type[BaseException]) -> Iterator[None]:
    """The block may fail with one of `errors` (the documented ones); others escape."""
    try:
        yield
    except errors:
        pass


# ------------------------------------------------------------------ mutants
# Random mutants of the seed corpus, for runs where libFuzzer's coverage
# guidance is not available (the ASan build: gcc's libasan shadows libFuzzer's
# coverage hooks). Deterministic for a given seed.

INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"0", b"7", b"9", b" ", b"/", b".", b"\n", b"=")


def load_dict(path: str) -> list[bytes]:
    """The values of a libFuzzer dictionary file (name="value", \\xNN escapes)."""
    tokens = []
    with open(path, encoding="ascii") as f:
        for line in f:
            m = re.match(r'^\s*[A-Za-z0-9_]*\s*=?\s*"(.*)"\s*$', line)
            if m is None or line.lstrip().startswith("#"):
                continue
            raw = m.group(1)
            out = bytearray()
            i = 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw):
                    if raw[i + 1] == "x" and i + 3 < len(raw):
                        out.append(int(raw[i + 2 : i + 4], 16))
                        i += 4
                        continue
                    out.append(ord(raw[i + 1]))
                    i += 2
                    continue
                out.append(ord(raw[i]))
                i += 1
            tokens.append(bytes(out))
    return tokens


def mutants(seeds: Sequence[bytes], tokens: Sequence[bytes], rng: random.Random,
            hot: Callable[[int, random.Random], int] | None = None) -> Iterator[bytes]:
    """Endless mutants: bit flips, interesting bytes, dictionary tokens inserted or
    written over, deletions, truncations and splices of two seeds. `hot(len, rng)`
    picks a position to favour (a tar header field), else positions are uniform."""
    pool = [s for s in seeds if s] or [b"\0"]
    tokens = list(tokens) or list(INTERESTING)
    while True:
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 6)):
            n = len(data)
            pos = hot(n, rng) if hot is not None and n and rng.random() < 0.7 else rng.randrange(n + 1)
            pos = min(pos, n)
            op = rng.randrange(7)
            if op == 0 and pos < n:
                data[pos] ^= 1 << rng.randrange(8)
            elif op == 1 and pos < n:
                data[pos : pos + 1] = rng.choice(INTERESTING)
            elif op == 2:
                data[pos:pos] = rng.choice(tokens)
            elif op == 3:
                tok = rng.choice(tokens)
                data[pos : pos + len(tok)] = tok
            elif op == 4:
                del data[pos : pos + rng.randint(1, 64)]
            elif op == 5:
                del data[rng.randrange(n + 1) :]
            else:
                other = rng.choice(pool)
                data[pos:] = other[rng.randrange(len(other) + 1) :]
        yield bytes(data)
