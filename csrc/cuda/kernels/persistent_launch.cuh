// Torch-free entry points of the persistent (whole-sequence) recurrence kernels: argument bundles and the launch
// functions, explicitly instantiated in persistent_{lstm,gru,rnn}.cu. Host code (the ATen launcher in
// csrc/cuda/persistent) includes only this header; it compiles with a plain C++ compiler.
//
// Storage types: __nv_bfloat16, __half, float, double. Accumulation, cell state and pointwise math run in float
// (double for double). Math modes: bf16/fp16 use mma.sync tensor cores; float uses TF32 mma (kTensorCore) or FMA
// (kFma); double always uses FMA.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "persistent_plan.cuh"
#include "persistent_stall.h"

namespace rnnfused {
namespace persistent {

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};

enum class MathMode : int { kTensorCore = 0, kFma = 1 };

// The accumulator bound of the kernel that runs this storage size / mode (PlanRequest::max_ntiles).
inline int max_ntiles_for(int elem_bytes, MathMode mode) {
  return (elem_bytes == 8 && mode == MathMode::kFma) ? 2 : kMaxNTiles;
}

// What both directions share. Sizes: T steps, B batch, H hidden, G gates, S = Cell::kSaved.
struct SequenceArgs {
  int steps = 0;                      // T
  bool reverse = false;
  const int64_t* lengths = nullptr;   // [B] on the device, or nullptr (every row runs T steps)
  const bool* resets = nullptr;       // [T, B] on the device, or nullptr: in-sequence resets (starts_from_initial in
                                      // common/step.h; never together with lengths)
  unsigned* flags = nullptr;          // [flag_words(geo)] zero before the launch: flag of CTA c at c*flag_stride
  unsigned* abort_word = nullptr;     // flags + abort_word_index(geo)
  StallRecord* stall = nullptr;       // pinned mapped host memory for the watchdog's record, or nullptr
  unsigned spin_limit = kSpinLimit;   // polls before a waiter gives up (persistent_stall.h)
  int debug_stall_phase = -1;         // tests: >= 0 makes CTA 0 stop publishing from this phase on (a stall)
};

// One layer-direction forward.
template <typename T>
struct ForwardArgs : SequenceArgs {
  using A = typename AccOf<T>::type;
  const T* xg = nullptr;              // [T, B, G*H]  x W_ihᵀ, no bias
  const T* b_ih = nullptr;            // [G*H] or nullptr
  const T* b_hh = nullptr;            // [G*H] or nullptr
  const T* h0 = nullptr;              // [B, H]
  const A* c0 = nullptr;              // [B, H] (LSTM)
  const T* w_packed = nullptr;        // [ctas, rows, k_padded]  per-CTA W_hh slices (see pack_forward_weights)
  T* ring = nullptr;                  // [ring_bytes(geo)] exchange buffer: [2, ring_rows, k_padded] (no
                                      // initialisation needed), LL: [2, ring_rows, ll_row_words] words, zeroed
  T* output = nullptr;                // [T, B, H]    zero on padded steps
  T* h_n = nullptr;                   // [B, H]
  T* saved = nullptr;                 // [T, B, S*H]  zero on padded steps (nullptr when S == 0)
  A* cells = nullptr;                 // [T, B, H]    c_t (LSTM), carried through padded steps
};

// One layer-direction BPTT sweep. dh_{t-1} = dgh_t W_hh + dh_direct_t runs inside; dX, dW are GEMMs outside.
template <typename T>
struct BackwardArgs : SequenceArgs {
  using A = typename AccOf<T>::type;
  const T* grad_out = nullptr;        // [T, B, H]   dL/doutput, zero on padded steps
  const T* grad_h_n = nullptr;        // [B, H]
  const T* grad_c_n = nullptr;        // [B, H] (LSTM)
  const T* saved = nullptr;           // [T, B, S*H]
  const A* cells = nullptr;           // [T, B, H] (LSTM)
  const A* c0 = nullptr;              // [B, H] (LSTM)
  const T* h_prev = nullptr;          // [T, B, H]   the state each step started from (GRU)
  const T* output = nullptr;          // [T, B, H]   h_t (Elman RNN)
  const T* w_packed = nullptr;        // [ctas, units, k_padded]  per-CTA W_hhᵀ slices (see pack_backward_weights)
  T* ring = nullptr;                  // as ForwardArgs::ring
  T* dgx = nullptr;                   // [T, B, G*H]
  T* dgh = nullptr;                   // [T, B, G*H] (== dgx unless Cell::kSplitRecurrentGrad)
  T* grad_h0 = nullptr;               // [B, H]
  T* grad_c0 = nullptr;               // [B, H] (LSTM)
  // With resets: the gradients of the states entering the segment starts, summed per row (zero before the launch;
  // the last phase adds them into grad_h0 / grad_c0). nullptr without resets.
  A* reset_grad_h0 = nullptr;         // [B, H]
  A* reset_grad_c0 = nullptr;         // [B, H] (LSTM)
};

// Cooperative launch of one persistent kernel on `stream`. Returns the CUDA error (cudaErrorCooperativeLaunchTooLarge
// when the grid cannot be co-resident), already cleared from the runtime's last-error slot (launch_status.h).
// `geo` must come from make_plan for the same sizes, element type and variant; the variant runs only in
// kTensorCore mode (variant_supported), cudaErrorInvalidValue otherwise.
inline bool variant_supported(MathMode mode, Variant v) {
  return v == Variant::kBaseline || mode == MathMode::kTensorCore;
}

template <typename Cell, typename T>
cudaError_t launch_persistent_forward(const ForwardArgs<T>& args, const Geometry& geo, MathMode mode,
                                      cudaStream_t stream);
template <typename Cell, typename T>
cudaError_t launch_persistent_backward(const BackwardArgs<T>& args, const Geometry& geo, MathMode mode,
                                       cudaStream_t stream);

}  // namespace persistent
}  // namespace rnnfused
