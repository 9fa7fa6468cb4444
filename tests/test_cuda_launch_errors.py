"""A failed CUDA launch leaves no error behind for the next, unrelated check.

The CUDA runtime records every failing call's error as the thread's "last error"; the next cudaGetLastError (PyTorch
checks it after its own kernels) would report it as its own failure. The launch helpers of csrc/cuda/kernels/
launch_status.h return the failure *and* take it out of that slot. This file compiles those helpers with g++ against
a mock CUDA runtime that models the last-error slot (no GPU, no driver needed: the real runtime without a driver
returns a sticky initialisation error that cannot show the difference), makes each runtime call fail in turn, and
checks the returned error and the slot. Sites that need torch (graph capture) are checked for the clearing call.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_INCLUDE = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")

MOCK = r"""
#include <cstdio>
#include <cstring>
#include <string>
#include "cuda/kernels/launch_status.h"

// ---- mock runtime: each call can be told to fail; a failure also lands in the last-error slot, as in cudart.
static cudaError_t g_last = cudaSuccess;
static std::string g_fail;          // name of the call that fails
static cudaError_t g_fail_with = cudaErrorInvalidValue;
static int g_per_sm = 1, g_sms = 132, g_launches = 0, g_smem_attr = -1;
static cudaError_t result(const char* name) {
  if (g_fail == name) { g_last = g_fail_with; return g_fail_with; }
  return cudaSuccess;
}
extern "C" {
cudaError_t cudaGetLastError(void) { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return g_last; }
const char* cudaGetErrorString(cudaError_t) { return "mock"; }
cudaError_t cudaFuncSetAttribute(const void*, enum cudaFuncAttribute, int value) {
  cudaError_t e = result("cudaFuncSetAttribute"); if (e == cudaSuccess) g_smem_attr = value; return e; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return result("cudaGetDevice"); }
cudaError_t cudaDeviceGetAttribute(int* v, enum cudaDeviceAttr, int) { *v = g_sms; return result("cudaDeviceGetAttribute"); }
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void*, int, size_t) {
  *n = g_per_sm; return result("cudaOccupancyMaxActiveBlocksPerMultiprocessor"); }
cudaError_t cudaLaunchCooperativeKernel(const void*, dim3, dim3, void**, size_t, cudaStream_t) {
  cudaError_t e = result("cudaLaunchCooperativeKernel"); if (e == cudaSuccess) ++g_launches; return e; }
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes*, const void*) { return result("cudaFuncGetAttributes"); }
}

int main(int argc, char** argv) {
  // argv: <call that fails or "none"> <blocks per SM> [probe]
  g_fail = argv[1];
  g_per_sm = std::atoi(argv[2]);
  g_fail_with = g_fail == "cudaFuncGetAttributes" ? cudaErrorNoKernelImageForDevice : cudaErrorInvalidValue;
  static int kernel;
  cudaError_t e;
  if (argc > 3) {
    e = rnnfused::cuda::probe_kernel_image(&kernel);
  } else {
    void* params[1] = {nullptr};
    e = rnnfused::cuda::launch_cooperative(&kernel, 128, 256, 200000, params, nullptr);
  }
  std::printf("%d %d %d %d\n", int(e), int(cudaPeekAtLastError()), g_launches, g_smem_attr);
  return 0;
}
"""

CALLS = ["cudaFuncSetAttribute", "cudaGetDevice", "cudaDeviceGetAttribute",
         "cudaOccupancyMaxActiveBlocksPerMultiprocessor", "cudaLaunchCooperativeKernel"]


@pytest.fixture(scope="module")
def mock_launch(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not os.path.exists(os.path.join(CUDA_INCLUDE, "cuda_runtime_api.h")):
        pytest.skip("needs a C++ compiler and the CUDA runtime headers")
    tmp = tmp_path_factory.mktemp("launch")
    src, exe = tmp / "mock_launch.cpp", tmp / "mock_launch"
    src.write_text(MOCK)
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"), "-I", CUDA_INCLUDE,
                    str(src), "-o", str(exe)], check=True)

    def run(fail, per_sm=1, probe=False):
        out = subprocess.run([str(exe), fail, str(per_sm)] + (["probe"] if probe else []), capture_output=True,
                             text=True, check=True).stdout.split()
        return tuple(int(v) for v in out)  # (returned error, last-error slot after, launches, smem attribute)

    return run


SUCCESS, INVALID_VALUE, TOO_LARGE, NO_IMAGE = 0, 1, 720, 209


def test_successful_launch_sets_the_smem_limit_and_launches(mock_launch):
    assert mock_launch("none") == (SUCCESS, SUCCESS, 1, 200000)


@pytest.mark.parametrize("call", CALLS)
def test_every_failing_call_is_returned_and_cleared(mock_launch, call):
    err, slot, launches, _ = mock_launch(call)
    assert err == INVALID_VALUE, f"{call}: the failure must be returned"
    assert slot == SUCCESS, f"{call}: the failure stayed in the runtime's last-error slot"
    assert launches == 0


def test_grid_that_cannot_be_co_resident_is_refused_without_launching(mock_launch):
    # 0 blocks per SM fit (e.g. the shared-memory request is too large): 0 * 132 < 128 CTAs.
    assert mock_launch("none", per_sm=0) == (TOO_LARGE, SUCCESS, 0, 200000)


def test_kernel_image_probe_clears_its_error(mock_launch):
    assert mock_launch("none", probe=True)[:2] == (SUCCESS, SUCCESS)
    assert mock_launch("cudaFuncGetAttributes", probe=True)[:2] == (NO_IMAGE, SUCCESS)


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def test_persistent_kernels_launch_through_the_clearing_helper():
    """The cooperative launch of the persistent kernels goes through launch_cooperative (no raw runtime call that
    could fail without clearing)."""
    kernel = _read("csrc", "cuda", "kernels", "persistent_kernel.cuh")
    assert "launch_cooperative(" in kernel
    for raw in ("cudaLaunchCooperativeKernel", "cudaFuncSetAttribute", "cudaOccupancyMaxActiveBlocks"):
        assert raw not in kernel, f"persistent_kernel.cuh calls {raw} directly"


def test_stepwise_launches_report_through_cuda_get_last_error():
    """A <<<>>> launch leaves its error in the last-error slot; the step-wise kernels return cudaGetLastError(), which
    reads and clears it."""
    for name in ("pointwise_forward.cu", "pointwise_backward.cu"):
        src = _read("csrc", "cuda", "kernels", name)
        launches = re.findall(r"<<<[^>]*>>>\([^;]*;\s*\n\s*return ([^;]*);", src)
        assert launches and all(r.strip() == "cudaGetLastError()" for r in launches), name


def test_failed_graph_capture_clears_the_error():
    """graph_cache.cpp falls back to the plain loop when a capture fails; the capture's CUDA error must not survive
    into the caller's next check."""
    src = _read("csrc", "cuda", "graph_cache.cpp")
    handler = src[src.index("} catch (const std::exception& err) {"):]
    handler = handler[:handler.index("return std::nullopt;")]
    assert "cudaGetLastError()" in handler


def test_host_side_runtime_calls_of_the_persistent_path_clear_failures():
    """Every direct runtime call in the ATen launcher (pinned stall-record allocation, capture-mode exchange) goes
    through cleared()."""
    src = _read("csrc", "cuda", "persistent", "persistent.cpp")
    calls = re.findall(r"(\w*)\(?(cuda(?:HostAlloc|HostGetDevicePointer|ThreadExchangeStreamCaptureMode))\(", src)
    assert calls and all(wrapper == "cleared" for wrapper, _ in calls), calls
