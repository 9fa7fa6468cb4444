// The validated inputs of one layer-direction, shared by every backend's op implementation.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace rnnfused {

struct LayerArgs {
  at::Tensor input;    // [T, B, I]
  at::Tensor h0;       // [B, H_out]
  at::Tensor c0;       // [B, H] (LSTM) or undefined
  at::Tensor w_ih;     // [G*H, I]
  at::Tensor w_hh;     // [G*H, H_out]
  at::Tensor b_ih;     // [G*H] or undefined
  at::Tensor b_hh;     // [G*H] or undefined
  at::Tensor w_hr;     // [H_out, H] (LSTM with proj_size) or undefined
  at::Tensor lengths;  // [B] int64 on input's device, or undefined (all rows run T steps); values in [1, T] when
                       // given on the CPU (checked), unchecked when given on the device (checked_lengths)
  at::Tensor resets;   // [T, B] bool on input's device, or undefined: resets[t, b] splits row b's sequence before
                       // step t (starts_from_initial in common/step.h); never together with lengths (checked)
  at::Tensor zoneout;  // [S, T, B, H] in cell_dtype, or undefined: zoneout keep-masks m ∈ [0, 1] of the hidden state
                       // (and, S = 2, of the cell state): state_t = m·state_{t-1} + (1 - m)·candidate_t
                       // (Krueger et al. 2017); LSTM (no projection) and GRU only (checked)
  bool reverse = false;
  bool train = true;  // false: inference, write nothing only backward needs (the forward ops' `train` argument)
  int64_t T = 0, B = 0, I = 0, H = 0, H_out = 0, G = 0;
};

// Checks every argument of a forward op (names the argument and what was expected in the error) and returns
// contiguous tensors. `op` is the op's name for messages; `gates` is G (4 LSTM, 3 GRU, 1 RNN).
LayerArgs make_layer_args(const char* op, int64_t gates, const at::Tensor& input, const at::Tensor& h0,
                          const std::optional<at::Tensor>& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                          const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
                          const std::optional<at::Tensor>& w_hr, const std::optional<at::Tensor>& lengths,
                          bool reverse, const std::optional<at::Tensor>& resets = std::nullopt,
                          const std::optional<at::Tensor>& zoneout = std::nullopt);

// lengths [B] int64 for an input [T, B, ...]: on the CPU → values checked to lie in [1, T], then copied to input's
// device (blocking when that is a GPU); already on input's device → returned as is, values NOT checked (reading
// them would synchronize with the GPU and break CUDA-graph capture): whoever moves lengths to the device checks
// them first (rnnfused.functional / the modules). Out-of-range values never cause out-of-bounds accesses: kernels
// only compare t < lengths[b].
at::Tensor checked_lengths(const char* op, const at::Tensor& lengths, const at::Tensor& input);

// Checks a tensor that a backward op receives against what the forward produced; returns it contiguous.
at::Tensor check_saved(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected,
                       at::ScalarType dtype, const at::Tensor& input);

// The dtype of the cell state and of the pointwise arithmetic: double for double, float otherwise.
inline at::ScalarType cell_dtype(at::ScalarType storage) {
  return storage == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace rnnfused
