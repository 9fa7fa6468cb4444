// What one fused pointwise pass of one time step reads and writes, as raw pointers.
//
// Torch-free, so the CUDA kernel files compile with plain `nvcc -c`. The sequence driver (csrc/sequence)
// fills these from tensor slices; the CPU loops (csrc/cpu) and the CUDA kernels (csrc/cuda/kernels) consume them.
//
// Types: T is the storage dtype (double, float, half, bfloat16); C is the cell-state / arithmetic type
// (double for double, float otherwise).
// Sizes: B batch rows, H hidden units per gate, G gates, S saved values per unit (Cell::kSaved),
//        H_out = proj_size if the LSTM has a projection, else H.
// A row b is active at step t iff lengths == nullptr or t < lengths[b] (PackedSequence semantics: padded
// steps leave the state untouched and produce zero output).
#pragma once

#include <cstdint>

#include "cell_math.h"  // RNNF_HD

namespace rnnfused {

// In-sequence state resets (the ops' `resets`, [T, B] bool as given; nullptr: none). resets[t, b] splits row b's
// sequence before step t: each segment runs as if alone, from the initial state (h0, c0), in both directions. So
// step t of row b starts from the initial state instead of the state its neighbour step carried: in forward when
// resets[t, b] (t > 0), in reverse when resets[t + 1, b] (t < T - 1). Backward sends the gradient of that entering
// state to h0/c0 of row b (summed over the row's segments) instead of into the neighbour step.
RNNF_HD bool starts_from_initial(const bool* resets, bool reverse, int64_t T, int64_t B, int64_t t, int64_t b) {
  if (resets == nullptr) return false;
  const int64_t from = reverse ? t + 1 : t;  // the step whose reset flag splits before this one
  return (reverse ? from < T : from > 0) && resets[from * B + b];
}

template <typename T, typename C>
struct ForwardStep {
  int64_t batch = 0;     // B
  int64_t hidden = 0;    // H
  int64_t t = 0;         // time index of this step (into lengths)
  const int64_t* lengths = nullptr;  // [B] or nullptr

  const T* xg = nullptr;      // [B, G*H]  x_t W_ihᵀ    (no bias)
  const T* hg = nullptr;      // [B, G*H]  h_{t-1} W_hhᵀ  (no bias)
  const T* b_ih = nullptr;    // [G*H]     input bias (zeros when the layer has none)
  const T* b_hh = nullptr;    // [G*H]     recurrent bias (zeros when the layer has none)
  const T* h_prev = nullptr;  // [B, H]    previous hidden state (GRU reads it; may alias h_state)
  const C* c_prev = nullptr;  // [B, H]    previous cell state (LSTM)

  T* saved = nullptr;    // [B, S*H]  activations for backward; zero on inactive rows
  C* c_new = nullptr;    // [B, H]    new cell state (LSTM); inactive rows carry c_prev
  T* out = nullptr;      // [B, H]    cell output (h', or r = σ(o)tanh(c') before a projection); zero on inactive rows
  T* h_state = nullptr;  // [B, H]    running hidden state updated on active rows; nullptr with a projection
};

template <typename T, typename C>
struct BackwardStep {
  int64_t batch = 0;     // B
  int64_t hidden = 0;    // H
  int64_t out_size = 0;  // H_out
  int64_t t = 0;
  const int64_t* lengths = nullptr;  // [B] or nullptr

  const T* dh_in = nullptr;     // [B, H_out]  dL/dh_t from later steps (and h_n)
  const T* grad_out = nullptr;  // [B, H_out]  dL/doutput_t, zero on padded rows; nullptr when folded into dr
  const T* dr = nullptr;        // [B, H]      dL/d(cell output) with a projection; nullptr → dh_in + grad_out
  const T* saved = nullptr;     // [B, S*H]
  const C* c = nullptr;         // [B, H]      c_t (LSTM)
  const C* c_prev = nullptr;    // [B, H]      c_{t-1} (LSTM)
  const T* h_prev = nullptr;    // [B, H]      h_{t-1} (GRU)
  const T* out = nullptr;       // [B, H]      h_t (Elman RNN)

  C* dc = nullptr;          // [B, H]      in: dL/dc_t, out: dL/dc_{t-1} (LSTM), updated in place
  T* dgx = nullptr;         // [B, G*H]    dL/d(input-projection pre-activations); zero on inactive rows
  T* dgh = nullptr;         // [B, G*H]    dL/d(recurrent pre-activations); may equal dgx (all but GRU)
  T* dh_direct = nullptr;   // [B, H_out]  the part of dL/dh_{t-1} that skips W_hh; inactive rows pass dh_in on
};

}  // namespace rnnfused
