#!/usr/bin/env bash
# Build the C core with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# tests that exercise it:
#
#   bash scripts/sanitize.sh                  # build (if the C changed) + run
#   bash scripts/sanitize.sh -x -k sparse     # extra arguments go to pytest (-k replaces the selection)
#
# The cffi extension (rootless/_native.abi3.so), rootless-monitor, the launcher
# (csrc/launcher/) and csrc/tests/untar_driver.c are built with gcc -fsanitize=address,undefined
# into a private copy of the tree
# ($ROOTLESS_SANITIZE_DIR, default /tmp/rootless-sanitize-$UID/tree), never over
# the in-place build or the installed venv. Then (Python with that copy first
# on PYTHONPATH and gcc's libasan/libubsan preloaded):
#   - a canary: a known heap overflow, signed overflow and leak must be
#     reported, so a silent toolchain cannot make this pass;
#   - the untar corpus through csrc/tests/untar_driver.c (rl_untar without
#     Python, so LeakSanitizer runs too);
#   - tests/native (rl_untar against hostile archives, as root and as nobody),
#     the untar fuzz corpus replay and ROOTLESS_MUTATE_SECONDS (default 20) of
#     random mutants of it (tests/fuzz/test_fuzz.py: libFuzzer's coverage
#     guidance does not work with gcc's ASan runtime, see docs/testing.md), the
#     monitor test (tests/fuzz/test_monitor.py) and the store's C jobs (rmtree,
#     the untar job, layer unpacking) from tests/store/test_store.py.
#   - as root, tests/integration/test_run.py with the CLI on the sanitized
#     build (ROOTLESS_SANITIZE_CLI=0 skips it): the spawn path, mounts, the
#     monitor and the store from the command line; and
#     tests/integration/test_run_plan.py with the sanitized launcher.
# Not the other identities nor the rest of tests/integration: the container's
# child runs on its own stack (clone with CLONE_VM), where ASan warns that it
# ignores __asan_handle_no_return ("false positive error reports may follow"),
# and every container's init is pid 1 in its PID namespace, so their report
# files (log_path.PID) collide: a test user's container cannot open root's
# cli.1 and dies. That warning is the one report that does not fail the run.
#
# Any sanitizer report fails the run: ASan reports go to $DIR/reports (every
# process, subprocesses included), UBSan's to stderr (gcc's UBSan ignores
# log_path next to ASan), which is kept in $DIR/pytest*.log and scanned.
# Exit status: 0 clean; 1 a test failed or a report was written; 2 no compiler
# or sanitizer runtime (the test wrapper skips, or fails under
# ROOTLESS_MUST_WORK=1).
#
# Environment: ROOTLESS_VENV (default /opt/rootless-venv: its python runs the
# tests), ROOTLESS_SANITIZE_DIR, ROOTLESS_MUTATE_SECONDS, ROOTLESS_SANITIZE_CLI,
# CC (default gcc).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOTLESS_VENV:-/opt/rootless-venv}"
PY="$VENV/bin/python"
DIR="${ROOTLESS_SANITIZE_DIR:-/tmp/rootless-sanitize-$(id -u)}"
CC_BIN="${CC:-gcc}"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS_SAN="-fno-omit-frame-pointer -O1 -g"

log() { printf '\033[1msanitize:\033[0m %s\n' "$*" >&2; }
unavailable() { printf 'sanitize: unavailable: %s\n' "$*" >&2; exit 2; }

command -v "$CC_BIN" >/dev/null || unavailable "no C compiler ($CC_BIN)"
[[ -x $PY ]] || unavailable "no python at $PY (set ROOTLESS_VENV)"
LIBASAN=$("$CC_BIN" -print-file-name=libasan.so)
LIBUBSAN=$("$CC_BIN" -print-file-name=libubsan.so)
[[ $LIBASAN == /* && -e $LIBASAN ]] || unavailable "no libasan for $CC_BIN (apt install gcc)"
[[ $LIBUBSAN == /* && -e $LIBUBSAN ]] || unavailable "no libubsan for $CC_BIN (apt install gcc)"

umask 022
mkdir -p "$DIR"
chmod 755 "$DIR"
REPORTS="$DIR/reports"
rm -rf "$REPORTS"
mkdir -m 1777 "$REPORTS" # tests switch to other users: they must be able to write reports
# log_path: one file per reporting process (pid suffix), whoever it runs as.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:print_summary=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"

# ---------------------------------------------------------------- canary

canary() {
    local exe="$DIR/canary" src="$REPO/csrc/tests/sanitizer_canary.c" kind out
    $CC_BIN $SAN $CFLAGS_SAN -o "$exe" "$src"
    for kind in heap-overflow signed-overflow leak; do
        if ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1" "$exe" "$kind" >"$DIR/canary.out" 2>&1; then
            log "canary $kind was not detected: the sanitizers do not work"; cat "$DIR/canary.out" >&2; exit 1
        fi
        out=$(cat "$DIR/canary.out")
        case $kind in
            heap-overflow) [[ $out == *"heap-buffer-overflow"* ]] ;;
            signed-overflow) [[ $out == *"signed integer overflow"* ]] ;;
            leak) [[ $out == *"detected memory leaks"* ]] ;;
        esac || { log "canary $kind: unexpected report"; echo "$out" >&2; exit 1; }
    done
    log "canary: heap overflow, signed overflow and leak are reported"
}

# ---------------------------------------------------------------- build

# A content hash of everything the build reads: rebuild only when it changes.
source_hash() {
    (cd "$REPO" && cat setup.py pyproject.toml csrc/*.c csrc/*.h csrc/build_ffi.py \
        csrc/monitor/*.c csrc/launcher/*.c csrc/launcher/*.h csrc/tests/*.c rootless/_version.py; echo "$CC_BIN $SAN $CFLAGS_SAN") | sha256sum | cut -c1-16
}

build() {
    local tree="$DIR/tree" hash
    hash=$(source_hash)
    # The Python sources are copied every time (cheap); the C is rebuilt on change.
    mkdir -p "$tree"
    rm -rf "$tree/rootless"
    tar -C "$REPO" --exclude='__pycache__' --exclude='*.so' --exclude='rootless/libexec/rootless-monitor' \
        --exclude='rootless/_native.c' -cf - rootless csrc setup.py pyproject.toml README.md \
        | tar -C "$tree" -xf -
    if [[ -f $DIR/stamp && $(cat "$DIR/stamp") == "$hash" && -f $DIR/_native.abi3.so && -x $DIR/rootless-monitor
          && -x $DIR/untar_driver && -x $DIR/rootless-launcher ]]; then
        log "build: C unchanged ($hash), reusing the sanitized build"
    else
        log "build: compiling the C core with $SAN"
        rm -rf "$tree/build"
        (cd "$tree" && CC="$CC_BIN $SAN" CFLAGS="$CFLAGS_SAN" LDSHARED="$CC_BIN $SAN -shared" \
            "$PY" setup.py -q build_ext --inplace --build-temp build/temp) >"$DIR/build.log" 2>&1 \
            || { cat "$DIR/build.log" >&2; log "build failed"; exit 1; }
        $CC_BIN $SAN $CFLAGS_SAN -std=gnu11 -D_GNU_SOURCE -DRL_VERSION='"sanitize"' -I"$tree/csrc" \
            -o "$DIR/untar_driver" "$tree/csrc/tests/untar_driver.c" "$tree"/csrc/rl_*.c \
            || { log "untar_driver build failed"; exit 1; }
        local version
        version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$tree/rootless/_version.py")
        $CC_BIN $SAN $CFLAGS_SAN -std=gnu11 -D_GNU_SOURCE -DRL_VERSION="\"$version\"" -DRL_PYTHON="\"$PY\"" \
            -I"$tree/csrc" -o "$DIR/rootless-launcher" "$tree"/csrc/launcher/*.c "$tree"/csrc/rl_*.c \
            || { log "launcher build failed"; exit 1; }
        cp "$tree"/rootless/_native*.so "$DIR/_native.abi3.so"
        cp "$tree/rootless/libexec/rootless-monitor" "$DIR/rootless-monitor"
        echo "$hash" >"$DIR/stamp"
    fi
    cp "$DIR/_native.abi3.so" "$tree/rootless/_native.abi3.so"
    mkdir -p "$tree/rootless/libexec"
    cp "$DIR/rootless-monitor" "$tree/rootless/libexec/rootless-monitor"
    local so
    for so in "$tree/rootless/_native.abi3.so" "$tree/rootless/libexec/rootless-monitor"; do
        readelf -d "$so" | grep -q 'NEEDED.*libasan' || { log "$so is not linked with ASan"; exit 1; }
    done
    chmod -R a+rX "$DIR"
}

# ---------------------------------------------------------------- run

# Reports are errors, except a file holding only ASan's warning about the
# container child's stack (see the header).
scan_reports() {
    local f found=0
    for f in "$REPORTS"/*; do
        [[ -e $f ]] || continue
        if grep -q -E 'ERROR|runtime error|SUMMARY' "$f" || ! grep -q '__asan_handle_no_return' "$f"; then
            echo "=== $f" >&2
            cat "$f" >&2
            found=1
        fi
    done
    if grep -q -E 'runtime error:|ERROR: (Address|Leak)Sanitizer|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer' \
        "$DIR"/pytest*.log; then
        log "sanitizer report in the test output (above; also in $DIR/pytest*.log)"
        found=1
    fi
    return $found
}

# cli_tests NAME REPORT TESTFILE COMMAND [EXPORT]: a wrapper $DIR/NAME that runs
# COMMAND on the sanitized tree, then tests/integration/TESTFILE as root with it.
cli_tests() {
    local name=$1 report=$2 file=$3 command=$4 extra=${5:-}
    printf '%s\n' '#!/bin/sh' \
        "export PYTHONPATH='$DIR/tree' LD_PRELOAD='$LIBASAN $LIBUBSAN' $extra" \
        "export ASAN_OPTIONS='detect_leaks=0:log_path=$REPORTS/$report' UBSAN_OPTIONS='$UBSAN_OPTIONS'" \
        "exec $command \"\$@\"" >"$DIR/$name"
    chmod 755 "$DIR/$name"
    log "CLI: tests/integration/$file as root with $DIR/$name"
    ROOTLESS_BIN="$DIR/$name" ROOTLESS_TEST_IDENTITIES=root "$PY" -P -m pytest -p no:cacheprovider -q \
        "tests/integration/$file" 2>&1 | tee "$DIR/pytest-$report.log" || rc=${PIPESTATUS[0]}
}

run_tests() {
    local tree="$DIR/tree" where rc=0
    export PYTHONPATH="$tree"
    export LD_PRELOAD="$LIBASAN $LIBUBSAN"
    where=$(cd / && "$PY" -P -c 'import rootless.native, os; print(os.path.dirname(rootless.native.__file__))')
    [[ $where == "$tree/rootless/native" ]] || { log "python imports rootless from $where, not $tree"; exit 1; }
    export ROOTLESS_MUTATE_SECONDS="${ROOTLESS_MUTATE_SECONDS:-20}"
    log "tests: rootless from $tree, LD_PRELOAD=$LD_PRELOAD, ${ROOTLESS_MUTATE_SECONDS}s of untar mutants"
    cd "$REPO"
    rm -f "$DIR"/pytest*.log
    # As root, the untar mutants get a nodev scratch mount in a private mount
    # namespace, so the device nodes they create cannot be opened (see fuzz_untar.py).
    local sandbox=()
    export ROOTLESS_FUZZ_SCRATCH="$DIR/scratch"
    rm -rf "$ROOTLESS_FUZZ_SCRATCH"
    mkdir -p "$ROOTLESS_FUZZ_SCRATCH"
    local nodev='mount --bind "$1" "$1" && mount -o remount,bind,nodev "$1" && shift && exec "$@"'
    if [[ $(id -u) == 0 ]] && unshare --mount --propagation private sh -c "$nodev" sh "$ROOTLESS_FUZZ_SCRATCH" true 2>/dev/null; then
        sandbox=(unshare --mount --propagation private sh -c "$nodev" sh "$ROOTLESS_FUZZ_SCRATCH")
    fi
    # The untar corpus through the C driver alone (no Python): here LeakSanitizer
    # can run, so rl_untar's allocations are checked too.
    log "untar_driver: the corpus without Python, leak detection on"
    ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=0/detect_leaks=1}" \
        "${sandbox[@]}" "$DIR/untar_driver" "$REPO/tests/fuzz/corpus/untar" || rc=$?
    # --capture=sys: Python's output is captured per test as usual, but fd 2 stays
    # the real stderr, so a report written by C (UBSan prints to stderr even with
    # log_path when combined with ASan) survives a process that dies of it.
    "${sandbox[@]}" "$PY" -P -m pytest -p no:cacheprovider -q --capture=sys \
        tests/native \
        tests/fuzz/test_fuzz.py tests/fuzz/test_monitor.py \
        tests/store/test_store.py \
        -k '(not test_fuzz or (untar and (replay_corpus or mutants))) and (not test_store or rmtree or untar or unpack or whiteouts)' \
        "$@" 2>&1 | tee "$DIR/pytest.log" || rc=${PIPESTATUS[0]}
    unset LD_PRELOAD PYTHONPATH
    rm -rf "$ROOTLESS_FUZZ_SCRATCH"
    if [[ ${ROOTLESS_SANITIZE_CLI:-1} != 0 && $(id -u) == 0 ]]; then
        # The CLI itself on the sanitized build (containers: spawn, mounts, the
        # monitor, the store), as root only: see the header for why.
        cli_tests rootless cli test_run.py "'$PY' -P -m rootless"
        # The native launcher, sanitized too, running plans (csrc/launcher/).
        cli_tests rootless-plan launcher test_run_plan.py "'$DIR/rootless-launcher'" "ROOTLESS_PYTHON='$PY'"
    fi
    scan_reports || exit 1
    ((rc == 0)) || { log "tests failed (exit $rc)"; exit 1; }
    log "clean: no sanitizer report"
}

canary
build
run_tests "$@"
