// Reused scratch buffers of the fused CPU path, so that the tensors that never leave an op (the input projection of
// every step, the gate gradients of the reverse sweep, the packed weights) are not fresh memory on every call.
//
// Why: a tensor above glibc's mmap threshold is mmap'ed on allocation and unmapped on free, so each call touches
// fresh pages; on the dev machine (a VM) that first touch costs ~1.4 ms per MB (an 80 MB buffer: ~115 ms to fill
// fresh vs ~17 ms refilled, measured 2026-11-30) — more than the recurrence of an LSTM layer of B=64 H=512 T=128
// spends on its GEMMs per 100 MB. One buffer per slot and thread (calls on different threads never share one), grown
// to the largest size asked for, up to kMaxCachedBytes (larger requests get a fresh tensor that is not kept).
// rnnfused._C._cpu_release_scratch() frees this thread's buffers.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace rnnfused {
namespace cpu {

enum class ScratchSlot : int {
  kInputGates = 0,      // forward: x W_ihᵀ of every step, in panels    (fused/kernel_api.h, ForwardArgs::xg)
  kGateGrads,           // backward: dL/d(input pre-activations)         [T, B, G*H]
  kRecurrentGateGrads,  // backward: dL/d(recurrent pre-activations), GRU [T, B, G*H]
  kPackedInputWeights,  // forward: W_ih in panels
  kPackedWeights,       // W_hh in panels (forward: rows, backward: columns)
  kPackedProjection,    // W_hr in panels (LSTM proj_size)
  kPackedGemmOperand,   // backward: the B operand of dL/dx and of the weight gradients, in panels
  kPackedGemmRows,      // backward: a chunk of the weight gradients' A = dgatesᵀ, row-major
  kWorkerSums,          // the workers' partial sums of their current panel
  kCount
};

// An uninitialised contiguous tensor of `sizes` and `options` (dtype, CPU) in the slot's buffer of this thread. Valid
// until the next request of the same slot on this thread: never return it (or a view of it) from an op.
at::Tensor scratch(ScratchSlot slot, at::IntArrayRef sizes, const at::TensorOptions& options);

// Frees this thread's buffers; returns the bytes freed.
int64_t release_scratch();

}  // namespace cpu
}  // namespace rnnfused
