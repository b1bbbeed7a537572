#!/usr/bin/env bash
# Prove `rootless run --gpus all` on a real NVIDIA machine (the test suite can only use
# a fake driver). Run it as the user who will run containers:
#
#   bash benchmarks/gpu_check.sh [IMAGE]     (default: the busybox-free Debian image
#                                             given by $GPU_CHECK_IMAGE, else debian:bookworm)
#
# Checks, each printed as PASS/FAIL:
#   1. nvidia-smi on the host lists GPUs
#   2. `rootless run --rm --gpus all IMAGE nvidia-smi -L` lists the same GPUs
#   3. --gpus 1 shows exactly one GPU; --gpus device=0 shows GPU 0
#   4. a CUDA sample, if one is found on the host (deviceQuery, or $CUDA_SAMPLE), runs
#      inside the container with the driver bound in and reports "Result = PASS"
#   5. --timings for a --gpus start (printed, not judged)
# Exit status: 0 when every check that could run passed.
set -uo pipefail

ROOTLESS=${ROOTLESS_BIN:-rootless}
IMAGE=${1:-${GPU_CHECK_IMAGE:-docker.io/library/debian:bookworm}}
fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
skip() { printf 'SKIP  %s\n' "$*"; }

if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check: no nvidia-smi on this host: not an NVIDIA machine" >&2
    exit 2
fi
host=$(nvidia-smi -L) && [[ -n $host ]] && pass "host: $(echo "$host" | wc -l) GPU(s)" \
    || { fail "host nvidia-smi -L"; exit 1; }
echo "$host"

$ROOTLESS pull -q "$IMAGE" || { fail "pull $IMAGE"; exit 1; }

inside=$($ROOTLESS run --rm --gpus all "$IMAGE" nvidia-smi -L 2>&1)
if [[ "$inside" == "$host" ]]; then pass "--gpus all: nvidia-smi -L inside matches the host"
else fail "--gpus all: inside says: $inside"; fi

$ROOTLESS run --rm --gpus all "$IMAGE" nvidia-smi >/dev/null 2>&1 \
    && pass "--gpus all: full nvidia-smi (NVML) works" || fail "--gpus all: nvidia-smi"

one=$($ROOTLESS run --rm --gpus 1 "$IMAGE" nvidia-smi -L 2>&1 | grep -c '^GPU')
[[ $one == 1 ]] && pass "--gpus 1: one GPU" || fail "--gpus 1: $one GPU(s)"
zero=$($ROOTLESS run --rm --gpus device=0 "$IMAGE" nvidia-smi -L 2>&1 | head -1)
[[ $zero == "$(echo "$host" | head -1)" ]] && pass "--gpus device=0: GPU 0" \
    || fail "--gpus device=0: $zero"

sample=${CUDA_SAMPLE:-}
if [[ -z $sample ]]; then
    for c in deviceQuery /usr/local/cuda/extras/demo_suite/deviceQuery \
             /usr/local/cuda/samples/bin/x86_64/linux/release/deviceQuery; do
        if command -v "$c" >/dev/null 2>&1; then sample=$(command -v "$c"); break; fi
    done
fi
if [[ -n $sample ]]; then
    dir=$(dirname "$(readlink -f "$sample")")
    cudalib=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [[ -d $d ]] && { cudalib=$d; break; }
    done
    extra=()
    [[ -n $cudalib ]] && extra=(-v "$cudalib:$cudalib:ro" -e "LD_LIBRARY_PATH=$cudalib")
    out=$($ROOTLESS run --rm --gpus all -v "$dir:$dir:ro" "${extra[@]}" "$IMAGE" \
          "$dir/$(basename "$sample")" 2>&1)
    if grep -q "Result = PASS" <<<"$out"; then pass "CUDA sample $(basename "$sample") inside"
    else fail "CUDA sample: $(tail -3 <<<"$out")"; fi
else
    skip "no CUDA sample found (set CUDA_SAMPLE=/path/to/deviceQuery)"
fi

$ROOTLESS run --rm --timings --gpus all "$IMAGE" true
echo
[[ $fails == 0 ]] && echo "gpu_check: all checks passed" || echo "gpu_check: $fails check(s) failed"
exit $((fails > 0))
