// Launch helpers that leave no error behind: when a CUDA runtime call fails, the runtime also records the error as
// the thread's "last error", which the next unrelated check (PyTorch's C10_CUDA_KERNEL_LAUNCH_CHECK after some other
// kernel, cudaGetLastError in another library) would report as its own. Every failure returned from here has been
// taken out of that slot first (cudaGetLastError), so the caller's exception is the only report.
//
// Torch-free and host-only (no device code): tests/test_cuda_launch_errors.py compiles it with g++ against a mock
// CUDA runtime that records the last-error slot, and checks that every failure path clears it.
#pragma once

#include <cuda_runtime_api.h>

namespace rnnfused {
namespace cuda {

// `err`, after removing it from the runtime's last-error slot when it is a failure.
inline cudaError_t cleared(cudaError_t err) {
  if (err != cudaSuccess) (void)cudaGetLastError();
  return err;
}

// One cooperative launch of `kernel` (grid CTAs of `block` threads, `smem` bytes of dynamic shared memory): raises
// the kernel's dynamic shared-memory limit, checks that the grid can be co-resident on the current device
// (cudaErrorCooperativeLaunchTooLarge otherwise), and launches. Returns the first failure, cleared.
inline cudaError_t launch_cooperative(const void* kernel, int grid, int block, size_t smem, void** params,
                                      cudaStream_t stream) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return cleared(err);
  int device = 0, sms = 0, per_sm = 0;
  if ((err = cudaGetDevice(&device)) != cudaSuccess) return cleared(err);
  if ((err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) {
    return cleared(err);
  }
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, smem);
  if (err != cudaSuccess) return cleared(err);
  if (per_sm * sms < grid) return cudaErrorCooperativeLaunchTooLarge;  // no runtime call failed: nothing to clear
  return cleared(cudaLaunchCooperativeKernel(kernel, dim3(grid), dim3(block), params, smem, stream));
}

// Whether this build has a kernel image (SASS or PTX) the current device can run: cudaFuncGetAttributes on one of
// the build's kernels, its failure (cudaErrorNoKernelImageForDevice on a GPU the build did not target) cleared.
inline cudaError_t probe_kernel_image(const void* kernel) {
  cudaFuncAttributes attrs;
  return cleared(cudaFuncGetAttributes(&attrs, kernel));
}

}  // namespace cuda
}  // namespace rnnfused
