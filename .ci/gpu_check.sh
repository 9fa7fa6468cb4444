#!/usr/bin/env bash
# The device check of every GPU path (issues 5, 6, 7, 10), for a machine with a GPU, torch preinstalled and no
# internet (the H100 test machine). One short run (<10 min): build, GPU tests, compute-sanitizer memcheck, timing
# tables vs cuDNN. Every stage runs even if an earlier one failed (except when the build fails); logs, CSVs and
# summary.txt go to $OUT (default ./gpu_check_out). Exit status: 0 when build, tests and memcheck all passed.
# Each stage has its own time limit, and all stages together stop at GPU_CHECK_BUDGET_S (default 570 s), so the
# summary is written inside a 10-minute device call. GPU_CHECK_STAGES picks stages (default: all, in this order:
# tests memcheck bench); env, build and import always run.
#
#   bash .ci/gpu_check.sh                                  # everything
#   GPU_CHECK_STAGES="tests memcheck" bash .ci/gpu_check.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PATH="$PATH:/usr/local/cuda/bin"
SUMMARY="$OUT/summary.txt"
BUDGET="${GPU_CHECK_BUDGET_S:-570}"
: > "$SUMMARY"
status=0
STAGES=" ${GPU_CHECK_STAGES:-tests memcheck bench} "
want() { [[ "$STAGES" == *" $1 "* ]]; }

# stage NAME LIMIT_S CMD...: runs CMD with a time limit (capped by what is left of the budget), logs to
# $OUT/NAME.log, records rc (124: timed out) and seconds.
stage() {
  local name="$1" limit="$2"
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 10 ]; then
    echo "$name rc=skipped (budget of ${BUDGET}s used up)" | tee -a "$SUMMARY" >&2
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start=$SECONDS
  echo "[gpu_check] $name: $*" >&2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$SUMMARY" >&2
  tail -n 25 "$OUT/$name.log" >&2
  return $rc
}

stage env 30 bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, \
torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'; nvcc --version | tail -2; \
command -v compute-sanitizer"

if ! stage build 240 env MAX_JOBS=16 RNNFUSED_BUILD_CUDA=1 CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" \
    "$PY" -m pip install --no-build-isolation --no-deps -e .; then
  echo "build failed; see $OUT/build.log" | tee -a "$SUMMARY"
  exit 1
fi
stage import 30 "$PY" -c "import rnnfused, torch; assert rnnfused.cuda_built(); \
print(rnnfused.available_backends('cuda'), rnnfused.cuda_path('lstm', 512, 8, 256, 256))" || status=1

# GPU tests: the cuda backend (step-wise and persistent paths), the Triton backend compiled, the GPU parts of the
# parity, hardening and benchmark files, and the backend rule.
if want tests; then
  stage tests 240 "$PY" -m pytest -q -rfEs --maxfail=50 tests/test_cuda_backend.py tests/test_persistent.py \
      tests/test_triton_backend.py tests/test_backend_parity.py tests/test_hardening.py tests/test_backends.py \
      tests/test_benchmarks.py -k "cuda or gpu or persistent or triton or test_backends" || status=1
fi

if want memcheck; then
  if command -v compute-sanitizer > /dev/null; then
    stage memcheck 120 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        --print-limit 20 "$PY" tests/gpu/sanitize_small.py || status=1
  else
    echo "memcheck rc=skipped (no compute-sanitizer)" | tee -a "$SUMMARY"
    status=1
  fi
fi

# Timings: the suite's --full preset starts with issue 6's headline configs, then the B∈{8,64} × H∈{256,1024} T=512
# table of issues 5/7, every kernel path side by side (cuda auto/stepwise/graphs/persistent, triton step/persistent)
# against cuDNN, each spot-checked before it is timed; it stops starting new shapes when its budget is used.
want bench && stage bench 260 "$PY" -m benchmarks --full --time-budget 200 --out "$OUT/bench"

echo "---- summary ($OUT) ----"
cat "$SUMMARY"
grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 3
grep -E "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null | tail -n 1
exit $status
