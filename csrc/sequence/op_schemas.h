// The op schemas of one cell, derived from its traits (csrc/common/cell_math.h). csrc/ops.cpp defines them for every
// cell of the registry; csrc/sequence/layer_ops.h reads and writes the arguments in exactly this order.
//
// Forward:  <name>(input, h0, [c0], w_ih, w_hh, b_ih?, b_hh?, [w_hr?], lengths?, reverse, train=True, resets=None,
//                  zoneout=None)
//             -> (output, h_n, [c_n], [saved], [cells])
//           train=False (inference, as PyTorch's _cudnn_rnn's `train`): nothing only backward needs is written;
//           saved and cells come back empty ([0]).
//           resets ([T, B] bool, optional, never with lengths): resets[t, b] splits row b's sequence before step t,
//           each segment running from the initial state (common/step.h: starts_from_initial).
//           zoneout ([S, T, B, H] keep-masks in the cell dtype, optional; LSTM S = 2 (h, c), GRU S = 1): each
//           step's new state is m·previous + (1 - m)·candidate (layer_args.h).
// Backward: <name>_backward(grad_output, grad_h_n, [grad_c_n], input, h0, [c0], w_ih, w_hh, [w_hr?], lengths?,
//                           reverse, output, [saved], [cells], resets=None, zoneout=None)
//             -> (grad_input, grad_h0, [grad_c0], grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, [grad_w_hr])
// [c0], [c_n], [cells], [grad_c_n], [grad_c0]: cells with a cell state (kHasCellState); [w_hr], [grad_w_hr]: cells
// with a projection (kHasProjection; grad_w_hr is [0] without w_hr); [saved]: cells that save activations (kSaved > 0).
#pragma once

#include <string>

#include "../common/cells.h"

namespace rnnfused {

// "(Tensor, Tensor, …)" with n entries.
inline std::string tensor_tuple(int n) {
  std::string s = "(";
  for (int i = 0; i < n; ++i) s += i ? ", Tensor" : "Tensor";
  return s + ")";
}

template <typename Cell>
constexpr int forward_outputs() {
  return 2 + (Cell::kHasCellState ? 2 : 0) + (Cell::kSaved > 0 ? 1 : 0);
}

template <typename Cell>
constexpr int backward_outputs() {
  return 6 + (Cell::kHasCellState ? 1 : 0) + (Cell::kHasProjection ? 1 : 0);
}

template <typename Cell>
std::string backward_name() {
  return std::string(Cell::kName) + "_backward";
}

template <typename Cell>
std::string forward_schema() {
  std::string s = std::string(Cell::kName) + "(Tensor input, Tensor h0, ";
  if (Cell::kHasCellState) s += "Tensor c0, ";
  s += "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, ";
  if (Cell::kHasProjection) s += "Tensor? w_hr, ";
  return s + "Tensor? lengths, bool reverse, bool train=True, Tensor? resets=None, Tensor? zoneout=None) -> " +
         tensor_tuple(forward_outputs<Cell>());
}

template <typename Cell>
std::string backward_schema() {
  std::string s = backward_name<Cell>() + "(Tensor grad_output, Tensor grad_h_n, ";
  if (Cell::kHasCellState) s += "Tensor grad_c_n, ";
  s += "Tensor input, Tensor h0, ";
  if (Cell::kHasCellState) s += "Tensor c0, ";
  s += "Tensor w_ih, Tensor w_hh, ";
  if (Cell::kHasProjection) s += "Tensor? w_hr, ";
  s += "Tensor? lengths, bool reverse, Tensor output";
  if (Cell::kSaved > 0) s += ", Tensor saved";
  if (Cell::kHasCellState) s += ", Tensor cells";
  return s + ", Tensor? resets=None, Tensor? zoneout=None) -> " + tensor_tuple(backward_outputs<Cell>());
}

}  // namespace rnnfused
