#!/usr/bin/env bash
# GPU check (issue 11): install devine-onnx with the `gpu` extra, print `devine-onnx info`, run
# the CUDA tests, time a 1601x1601 table for 36 directions on CUDA and CPU, fp32 and fp16, and
# write the results (gpu_check.json, gpu_check.md, and the logs) into the results folder.
# About 3-6 minutes on one H100/H200 (each run stops being started after --budget seconds).
#
# Usage (from anywhere):
#   scripts/gpu_check.sh [--cpu-only] [--no-install] [--size N] [--directions N] [--budget S]
#
# Environment:
#   PYTHON          the Python to install into and run (default: python3, e.g. an activated venv)
#   PIP_FIND_LINKS  a folder of wheels: the install then runs offline (pip --no-index), for
#                   GPU machines without internet; carry onnxruntime-gpu and whatever is missing
#   PIP_NO_INDEX    set it yourself to force offline installs without PIP_FIND_LINKS
#   EXTRAS          extras to install (default: gpu; "gpu,test" adds the whole test suite's
#                   needs, PyTorch included, which the CUDA tests do not need)
#   OUT             results folder (default: gpu-check/ in the repository)
#
# Without a usable CUDA device (no NVIDIA driver, or the CPU build of ONNX Runtime) it says so,
# skips the CUDA tests and timings, measures the CPU rows and exits 0: it never fails only
# because there is no GPU. Not part of CI (.ci/run does not call it).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
RESULTS=${OUT:-gpu-check}
EXTRAS=${EXTRAS:-gpu}
INSTALL=1
BENCH_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) INSTALL=0 ;;
        --cpu-only) BENCH_ARGS+=(--cpu-only) ;;
        --size|--directions|--budget|--batch) BENCH_ARGS+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.log"
: >"$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
START=$(date +%s)

if [ "$INSTALL" = 1 ]; then
    PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check)
    if [ -n "${PIP_FIND_LINKS:-}" ]; then
        PIP+=(--no-index --find-links "$PIP_FIND_LINKS")
        say "installing devine-onnx[$EXTRAS] offline from $PIP_FIND_LINKS"
    else
        say "installing devine-onnx[$EXTRAS]"
    fi
    # onnxruntime (CPU) and onnxruntime-gpu install the same files: never keep both.
    if "$PYTHON" -m pip show --quiet onnxruntime >/dev/null 2>&1; then
        say "removing the CPU package onnxruntime (onnxruntime-gpu replaces it)"
        "$PYTHON" -m pip uninstall --quiet --yes onnxruntime 2>&1 | tee -a "$LOG"
        if "$PYTHON" -m pip show --quiet onnxruntime-gpu >/dev/null 2>&1; then
            "${PIP[@]}" --force-reinstall --no-deps onnxruntime-gpu 2>&1 | tee -a "$LOG"
        fi
    fi
    "${PIP[@]}" -e ".[$EXTRAS]" "pytest>=8" 2>&1 | tee -a "$LOG"
    # The fp16 timings need onnxconverter-common (optional: skipped with a message without).
    "${PIP[@]}" "onnxconverter-common>=1.14" >>"$LOG" 2>&1 ||
        say "onnxconverter-common not installed: the fp16 rows will be skipped"
fi

say "devine-onnx info"
"$PYTHON" -m devine_onnx.cli info 2>&1 | tee "$RESULTS/info.txt" | tee -a "$LOG" || true
command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 | tee -a "$LOG" || true

CUDA=$("$PYTHON" -c 'from devine_onnx.engines.runtime import cuda_usable; print(int(cuda_usable()))')
if [ "$CUDA" = 1 ]; then
    say "CUDA is usable: CUDA tests"
else
    say "no usable CUDA device here: the CUDA tests skip themselves, CPU timings only"
fi
# The CUDA-marked tests (pytest -m gpu), only in the files that have some: the rest of the suite
# needs the test extra (PyTorch, TensorFlow...).
mapfile -t GPU_TESTS < <(grep -rl --include='test_*.py' 'mark\.gpu' tests | sort)
set +e
"$PYTHON" -m pytest -m gpu -p no:cacheprovider -q -rs "${GPU_TESTS[@]}" 2>&1 |
    tee "$RESULTS/gpu_tests.txt" | tee -a "$LOG"
TESTS=${PIPESTATUS[0]}
set -e
[ "$TESTS" = 5 ] && TESTS=0 # pytest: no test selected

say "timings"
"$PYTHON" -m tests.benchmarks.bench_gpu --out "$RESULTS" "${BENCH_ARGS[@]}" 2>&1 | tee -a "$LOG"
BENCH=${PIPESTATUS[0]}

say "done in $(($(date +%s) - START)) s: results in $RESULTS/ (gpu_check.md, gpu_check.json)"
if [ "$TESTS" != 0 ] || [ "$BENCH" != 0 ]; then
    say "FAILED: CUDA tests exit $TESTS, timings exit $BENCH"
    exit 1
fi
