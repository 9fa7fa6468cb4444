// The persistent CUDA path of one layer-direction: one cooperative kernel launch runs all T steps (W_hh resident in
// shared memory, h exchanged through L2 with per-CTA flags), see DESIGN.md next to this file.
//
// Interchangeable with the step-wise path: same ForwardResult / BackwardResult structs and the same saved-tensor
// formats as csrc/sequence/driver.h (output [T,B,H] zero at padded steps, h_n, c_n, saved [T,B,S*H] holding what
// Cell::forward saves, cells [T,B,H] in the cell dtype carrying c through padded steps), so a persistent forward can
// be differentiated by a step-wise backward and vice versa.
//
// Wiring into the cuda backend (csrc/cuda/dispatch.cpp, ops_cuda.cpp):
//   choose_path:   persistent::persistent_supported(a, &why) ? CudaPath::kPersistent : CudaPath::kStepwise
//   forward:       persistent::persistent_forward<Cell>(a)
//   backward:      persistent::persistent_backward<Cell>(a, grad_output, grad_h_n, grad_c_n, fwd)
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../../sequence/driver.h"
#include "../kernels/persistent_launch.cuh"
#include "../kernels/persistent_plan.cuh"
#include "pack.h"

namespace rnnfused {
namespace persistent {

enum class Pass { kForward, kBackward, kBoth };

// The math a dtype runs in on this path: bf16/fp16 tensor cores; float32 TF32 tensor cores when PyTorch allows TF32
// for matmuls (torch.backends.cuda.matmul.allow_tf32 / set_float32_matmul_precision("high")), else FMA; float64 FMA.
MathMode math_mode(at::ScalarType dtype);

// The tuning knob RNNFUSED_PERSISTENT_TUNING (variant, units, nchunk; kernels/persistent_tuning.h), read at every
// call; a malformed value is an error naming the variable.
Tuning tuning_from_env();

// The geometry of one direction of a layer with these sizes on this GPU, for the tuning from the environment. Does
// not look at tensors.
Plan plan_layer(int64_t gates, int64_t hidden, int64_t batch, at::ScalarType dtype, Direction dir,
                const cudaDeviceProp& prop);

// Test hooks of one launch (the debug op _persistent_forward exposes them).
struct DebugOptions {
  int stall_phase = -1;             // >= 0: CTA 0 stops publishing from this phase on (the watchdog must fire)
  unsigned spin_limit = kSpinLimit; // polls before a waiter gives up
};

// The watchdog's record (persistent_stall.h): pinned mapped host memory shared by every device and launch,
// allocated on first use. take_stall() returns it (stalled == 0: none) and clears it unless clear is false. A launch
// first checks it: when an earlier launch was abandoned, the launch raises that record as its error (once) instead
// of running.
StallRecord take_stall(bool clear = true);

// THE fit rule of the persistent path (for automatic dispatch): true when `a` can and should run persistently —
// CUDA tensors, no projection (proj_size), a tensor-core math mode (bf16, fp16, or float32 with TF32 allowed; the
// FMA modes are for tests), cooperative launch, compute capability >= 8, and the requested passes' W_hh slices and
// buffers fit in shared memory with at most one CTA per SM. Otherwise false and *why_not says why.
bool persistent_supported(const LayerArgs& a, const cudaDeviceProp& prop, std::string* why_not,
                          Pass pass = Pass::kBoth);
// The same for a's own device (false for non-CUDA tensors without touching CUDA).
bool persistent_supported(const LayerArgs& a, std::string* why_not, Pass pass = Pass::kBoth);

// Forward of one layer-direction. Runs any dtype whose plan fits (float64 and float32-without-TF32 in FMA mode);
// fails with a message naming the reason when the plan does not fit or w_hr is given.
template <typename Cell>
ForwardResult persistent_forward(const LayerArgs& a, const DebugOptions& debug = DebugOptions());

// BPTT of one layer-direction from a forward's saved tensors (from either path). grad_output [T,B,H],
// grad_h_n [B,H], grad_c_n [B,H] (LSTM; undefined otherwise).
template <typename Cell>
BackwardResult persistent_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                   const at::Tensor& grad_c_n, const ForwardResult& fwd);

}  // namespace persistent
}  // namespace rnnfused
