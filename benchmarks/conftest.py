"""pytest configuration for benchmarks/ (pytest-benchmark suites; not part of `pytest tests`).

    python -m pytest benchmarks/test_hot_paths.py --benchmark-only

The checkout is put first on sys.path when it has an in-place build of the C core
(`python setup.py build_ext --inplace`), so the tree is measured; otherwise the
installed `rootless` is.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if any(REPO.joinpath("rootless").glob("_native*.so")) and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
