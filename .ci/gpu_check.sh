#!/usr/bin/env bash
# Device check of the cuda backend's step-wise path (issue 5), for a machine with a GPU, torch preinstalled and no
# internet (the H100 test machine). One short run (~8 min): build, GPU tests, compute-sanitizer memcheck, timing
# table vs cuDNN. Every stage runs even if an earlier one failed (except when the build fails); logs, the CSV and
# summary.txt go to $OUT (default ./gpu_check_out). Exit status: 0 when build, tests and memcheck all passed.
# Each stage has its own time limit, and all stages together stop at GPU_CHECK_BUDGET_S (default 570 s), so the
# summary is written inside a 10-minute device call.
#
#   bash .ci/gpu_check.sh
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

# GPU tests: the cuda backend file, the cuda parametrization of the generic parity tests, the backend rule.
stage tests 200 "$PY" -m pytest -q -rfEs tests/test_cuda_backend.py tests/test_backend_parity.py \
    tests/test_backends.py -k "cuda or test_backends" || status=1

stage timing 120 "$PY" tests/gpu/time_vs_cudnn.py --out "$OUT"

if command -v compute-sanitizer > /dev/null; then
  stage memcheck 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
      --print-limit 20 "$PY" tests/gpu/sanitize_small.py || status=1
else
  echo "memcheck rc=skipped (no compute-sanitizer)" | tee -a "$SUMMARY"
  status=1
fi

echo "---- summary ($OUT) ----"
cat "$SUMMARY"
grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 3
grep -E "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null | tail -n 1
exit $status
