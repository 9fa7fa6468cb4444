// The single-step op schemas of one cell, derived from its traits (csrc/common/cell_math.h), as
// csrc/sequence/op_schemas.h does for the sequence ops. csrc/ops.cpp defines them for every cell of the registry;
// csrc/cell/cell_ops.h reads and writes the arguments in exactly this order.
//
// Forward:  <name>_cell(input, hx, [cx], w_ih, w_hh, b_ih?, b_hh?) -> (h, [c], [saved])
// Backward: <name>_cell_backward(grad_h, [grad_c?], input, hx, [cx], w_ih, w_hh, h, [saved], [c], output_mask)
//             -> (grad_input, grad_hx, [grad_cx], grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)
// [cx], [c], [grad_c?], [grad_cx]: cells with a cell state (kHasCellState; grad_c None: c' unused);
// [saved]: cells that save activations (kSaved > 0). h is h', which the Elman backward reads.
// output_mask (bool[4]: input, hx, weights, biases): the gradients it leaves out come back as empty [0] tensors
// (grad_cx is always computed: it falls out of the pointwise pass).
#pragma once

#include <string>

#include "../common/cells.h"
#include "../sequence/op_schemas.h"

namespace rnnfused {

template <typename Cell>
constexpr int cell_forward_outputs() {
  return 1 + (Cell::kHasCellState ? 1 : 0) + (Cell::kSaved > 0 ? 1 : 0);
}

template <typename Cell>
constexpr int cell_backward_outputs() {
  return 6 + (Cell::kHasCellState ? 1 : 0);
}

template <typename Cell>
std::string cell_forward_name() {
  return std::string(Cell::kName) + "_cell";
}

template <typename Cell>
std::string cell_backward_name() {
  return std::string(Cell::kName) + "_cell_backward";
}

template <typename Cell>
std::string cell_forward_schema() {
  std::string s = cell_forward_name<Cell>() + "(Tensor input, Tensor hx, ";
  if (Cell::kHasCellState) s += "Tensor cx, ";
  return s + "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> " + tensor_tuple(cell_forward_outputs<Cell>());
}

template <typename Cell>
std::string cell_backward_schema() {
  std::string s = cell_backward_name<Cell>() + "(Tensor grad_h, ";
  if (Cell::kHasCellState) s += "Tensor? grad_c, ";
  s += "Tensor input, Tensor hx, ";
  if (Cell::kHasCellState) s += "Tensor cx, ";
  s += "Tensor w_ih, Tensor w_hh, Tensor h, ";
  if (Cell::kSaved > 0) s += "Tensor saved, ";
  if (Cell::kHasCellState) s += "Tensor c, ";
  return s + "bool[4] output_mask) -> " + tensor_tuple(cell_backward_outputs<Cell>());
}

}  // namespace rnnfused
