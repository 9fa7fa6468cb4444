// The op implementations of every cell (the schemas of csrc/sequence/op_schemas.h) around a `Runner` that runs one
// layer-direction: argument checks (layer_args.h) and result packing, written once for all cells as boxed kernels
// that read the arguments in schema order from the cell's traits. A backend registers them for its dispatch key with
// `register_layer_ops<ItsRunner>(m)`; the step-wise driver over a Pointwise policy is `StepwiseRunner<Pointwise>`.
//
// A Runner provides
//   template <typename Cell> static ForwardResult forward(const LayerArgs&);
//   template <typename Cell> static BackwardResult backward(const LayerArgs&, const at::Tensor& grad_output,
//                                                            const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
//                                                            const ForwardResult& saved_forward);
// (the CUDA backend's runner picks a path per call, csrc/cuda/dispatch.h).
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>

#include "../common/cells.h"
#include "driver.h"
#include "op_schemas.h"

namespace rnnfused {

// The Runner of the step-wise driver (driver.h) over a Pointwise policy.
template <typename Pointwise>
struct StepwiseRunner {
  template <typename Cell>
  static ForwardResult forward(const LayerArgs& a) {
    return sequence_forward<Cell, Pointwise>(a);
  }
  template <typename Cell>
  static BackwardResult backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
    return sequence_backward<Cell, Pointwise>(a, grad_output, grad_h_n, grad_c_n, fwd);
  }
};

namespace detail {

// The arguments of a boxed call, read in schema order.
class ArgReader {
 public:
  ArgReader(torch::jit::Stack* stack, size_t count) : args_(torch::jit::last(*stack, count)) {}
  at::Tensor tensor() { return args_[next_++].toTensor(); }
  std::optional<at::Tensor> optional_tensor() {
    const c10::IValue& v = args_[next_++];
    return v.isNone() ? std::nullopt : std::optional<at::Tensor>(v.toTensor());
  }
  bool boolean() { return args_[next_++].toBool(); }
  template <size_t N>
  std::array<bool, N> booleans() {  // a bool[N] argument
    const c10::List<bool> list = args_[next_++].toBoolList();
    TORCH_CHECK(list.size() == N, "expected bool[", N, "], got ", list.size(), " values");
    std::array<bool, N> out{};
    for (size_t i = 0; i < N; ++i) out[i] = list.get(i);
    return out;
  }

 private:
  c10::ArrayRef<c10::IValue> args_;
  size_t next_ = 0;
};

// The forward's outputs that backward reads, checked against the shapes the forward produces.
template <typename Cell>
ForwardResult saved_forward(const char* op, const LayerArgs& a, const at::Tensor& output, const at::Tensor& saved,
                            const at::Tensor& cells) {
  const auto dtype = a.input.scalar_type();
  TORCH_CHECK(Cell::kSaved == 0 || !saved.defined() || saved.numel() > 0 || a.T * a.B * a.H == 0, op,
              ": saved is empty: the forward ran with train=False (inference), which keeps nothing for backward");
  ForwardResult f;
  f.output = check_saved(op, "output", output, {a.T, a.B, a.H_out}, dtype, a.input);
  f.saved = Cell::kSaved > 0 ? check_saved(op, "saved", saved, {a.T, a.B, Cell::kSaved * a.H}, dtype, a.input)
                             : at::empty({a.T, a.B, 0}, a.input.options());
  if (Cell::kHasCellState) f.cells = check_saved(op, "cells", cells, {a.T, a.B, a.H}, cell_dtype(dtype), a.input);
  return f;
}

// <name>(input, h0, [c0], w_ih, w_hh, b_ih?, b_hh?, [w_hr?], lengths?, reverse, train, resets?, zoneout?)
//   -> (output, h_n, [c_n], [saved], [cells]); saved and cells are [0] when !train, whatever the runner wrote (a path
//   may keep writing them, e.g. the CUDA persistent kernels).
template <typename Runner, typename Cell>
void forward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const std::string name = op.schema().name();
  const size_t count = op.schema().arguments().size();
  ArgReader in(stack, count);
  const at::Tensor input = in.tensor(), h0 = in.tensor();
  const std::optional<at::Tensor> c0 = Cell::kHasCellState ? std::optional<at::Tensor>(in.tensor()) : std::nullopt;
  const at::Tensor w_ih = in.tensor(), w_hh = in.tensor();
  const std::optional<at::Tensor> b_ih = in.optional_tensor(), b_hh = in.optional_tensor();
  const std::optional<at::Tensor> w_hr = Cell::kHasProjection ? in.optional_tensor() : std::nullopt;
  const std::optional<at::Tensor> lengths = in.optional_tensor();
  const bool reverse = in.boolean();
  const bool train = in.boolean();
  const std::optional<at::Tensor> resets = in.optional_tensor();
  const std::optional<at::Tensor> zoneout = in.optional_tensor();
  torch::jit::drop(*stack, count);

  LayerArgs a = make_layer_args(name.c_str(), Cell::kGates, input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                                reverse, resets, zoneout);
  a.train = train;
  ForwardResult r = Runner::template forward<Cell>(a);
  if (!train) {
    r.saved = at::empty({0}, input.options());
    r.cells = at::empty({0}, input.options().dtype(cell_dtype(input.scalar_type())));
  }
  torch::jit::push(*stack, std::move(r.output), std::move(r.h_n));
  if (Cell::kHasCellState) torch::jit::push(*stack, std::move(r.c_n));
  if (Cell::kSaved > 0) torch::jit::push(*stack, std::move(r.saved));
  if (Cell::kHasCellState) torch::jit::push(*stack, std::move(r.cells));
}

// <name>_backward(grad_output, grad_h_n, [grad_c_n], input, h0, [c0], w_ih, w_hh, [w_hr?], lengths?, reverse,
//                 output, [saved], [cells], resets?, zoneout?) -> (grad_input, grad_h0, [grad_c0], grad_w_ih, grad_w_hh, grad_b_ih,
//                                               grad_b_hh, [grad_w_hr])
template <typename Runner, typename Cell>
void backward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const std::string name = op.schema().name();
  const char* op_name = name.c_str();
  const size_t count = op.schema().arguments().size();
  ArgReader in(stack, count);
  const at::Tensor grad_output = in.tensor(), grad_h_n = in.tensor();
  const at::Tensor grad_c_n = Cell::kHasCellState ? in.tensor() : at::Tensor();
  const at::Tensor input = in.tensor(), h0 = in.tensor();
  const std::optional<at::Tensor> c0 = Cell::kHasCellState ? std::optional<at::Tensor>(in.tensor()) : std::nullopt;
  const at::Tensor w_ih = in.tensor(), w_hh = in.tensor();
  const std::optional<at::Tensor> w_hr = Cell::kHasProjection ? in.optional_tensor() : std::nullopt;
  const std::optional<at::Tensor> lengths = in.optional_tensor();
  const bool reverse = in.boolean();
  const at::Tensor output = in.tensor();
  const at::Tensor saved = Cell::kSaved > 0 ? in.tensor() : at::Tensor();
  const at::Tensor cells = Cell::kHasCellState ? in.tensor() : at::Tensor();
  const std::optional<at::Tensor> resets = in.optional_tensor();
  const std::optional<at::Tensor> zoneout = in.optional_tensor();
  torch::jit::drop(*stack, count);

  const LayerArgs a = make_layer_args(op_name, Cell::kGates, input, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt,
                                      w_hr, lengths, reverse, resets, zoneout);
  const ForwardResult f = saved_forward<Cell>(op_name, a, output, saved, cells);
  const auto dtype = input.scalar_type();
  const at::Tensor gh = check_saved(op_name, "grad_h_n", grad_h_n, {a.B, a.H_out}, dtype, input);
  const at::Tensor gc =
      Cell::kHasCellState ? check_saved(op_name, "grad_c_n", grad_c_n, {a.B, a.H}, dtype, input) : at::Tensor();
  const at::Tensor go = check_saved(op_name, "grad_output", grad_output, {a.T, a.B, a.H_out}, dtype, input);
  BackwardResult g = Runner::template backward<Cell>(a, go, gh, gc, f);
  torch::jit::push(*stack, std::move(g.grad_input), std::move(g.grad_h0));
  if (Cell::kHasCellState) torch::jit::push(*stack, std::move(g.grad_c0));
  torch::jit::push(*stack, std::move(g.grad_w_ih), std::move(g.grad_w_hh), std::move(g.grad_b_ih),
                   std::move(g.grad_b_hh));
  if (Cell::kHasProjection) {
    torch::jit::push(*stack, g.grad_w_hr.defined() ? std::move(g.grad_w_hr) : at::empty({0}, input.options()));
  }
}

}  // namespace detail

// Registers the forward and backward op of every cell with `Runner`, inside TORCH_LIBRARY_IMPL.
template <typename Runner>
void register_layer_ops(torch::Library& m) {
  for_each_cell([&m](auto cell) {
    using Cell = decltype(cell);
    m.impl(Cell::kName, torch::CppFunction::makeFromBoxedFunction<&detail::forward_kernel<Runner, Cell>>());
    m.impl(backward_name<Cell>().c_str(),
           torch::CppFunction::makeFromBoxedFunction<&detail::backward_kernel<Runner, Cell>>());
  });
}

}  // namespace rnnfused
