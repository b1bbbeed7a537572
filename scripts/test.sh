#!/usr/bin/env bash
# Install everything (scripts/setup-host.sh) and run the test suite as root
# with the project's venv. Extra arguments go to pytest:
#
#   sudo bash scripts/test.sh                      # everything
#   sudo bash scripts/test.sh tests/unit -x        # a subset
#   sudo bash scripts/test.sh -k 'nosub and run'   # one identity
#
# Environment: CI=true sets ROOTLESS_MUST_WORK=1 (a skip for a missing kernel
# feature or tool fails instead); ROOTLESS_SETUP=0 skips setup-host.sh (when it
# already ran); ROOTLESS_BIN overrides the CLI under test.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOTLESS_VENV:-/opt/rootless-venv}"

if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: must run as root (the suite switches to test users): sudo bash $0 $*" >&2
    exit 1
fi

if [[ ${ROOTLESS_SETUP:-1} != 0 ]]; then
    bash "$REPO/scripts/setup-host.sh"
fi

if [[ ${CI:-} == true ]]; then
    export ROOTLESS_MUST_WORK=1
fi

cd "$REPO"
# -P: never put the checkout on sys.path, so `import rootless` is the installed
# (compiled) package, not the source tree. The cache goes outside the checkout
# so a root-owned .pytest_cache does not land in a user's tree.
exec "$VENV/bin/python" -P -m pytest -o cache_dir=/tmp/rootless-pytest-cache "$@"
