// Host-side entry points of the fused per-step pointwise kernels (one launch per step, forward or backward).
//
// Torch-free: the launchers in csrc/cuda include this header; the kernels live in pointwise_forward.cu and
// pointwise_backward.cu, which explicitly instantiate these templates for
//   every Cell of the registry (RNNF_FOR_EACH_CELL, csrc/common/cells.h)
//   (T, C) ∈ {(double, double), (float, float), (__half, float), (__nv_bfloat16, float)}
// (T = storage dtype, C = arithmetic and LSTM cell-state dtype). The semantics are those of the CPU loops
// (csrc/cpu/pointwise_cpu.h) and of the field comments in csrc/common/step.h.
//
// Both functions launch on `stream` and return the launch status (cudaGetLastError()), or cudaErrorInvalidValue
// without launching when the step is malformed (missing pointers, sizes that the kernel cannot index).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "../../common/step.h"

namespace rnnfused {
namespace cuda {

template <typename Cell, typename T, typename C>
cudaError_t forward_step(const ForwardStep<T, C>& s, cudaStream_t stream);

template <typename Cell, typename T, typename C>
cudaError_t backward_step(const BackwardStep<T, C>& s, cudaStream_t stream);

// cudaSuccess when this build holds a kernel image (SASS or PTX) that the current device can run; else the error
// (cudaErrorNoKernelImageForDevice on a GPU the build did not target), cleared from the runtime's last-error slot.
// Every .cu file of the extension is built for the same targets, so one kernel answers for all.
cudaError_t probe_kernel_image();

}  // namespace cuda
}  // namespace rnnfused
