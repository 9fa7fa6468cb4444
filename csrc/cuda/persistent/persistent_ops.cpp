// Direct entry points to the persistent path, for tests and benchmarks while (and after) the cuda backend's
// dispatch decides per call. Not part of the public op set (no fake/autograd registration; leading underscore):
//   torch.ops.rnnfused._persistent_forward(cell, input, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
//                                          debug_stall_phase=-1, debug_spin_limit=0, resets=None)
//       -> output [T,B,H], h_n [B,H], c_n [B,H] ([0] unless LSTM), saved [T,B,S*H], cells [T,B,H] ([0] unless LSTM)
//       debug_stall_phase >= 0 makes CTA 0 stop publishing from that phase on, so the watchdog must abandon the
//       launch (tests of the stall record); debug_spin_limit > 0 replaces the spin limit (polls).
//   torch.ops.rnnfused._persistent_backward(cell, grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh,
//                                           lengths, reverse, output, saved, cells, resets=None)
//       -> grad_input, grad_h0, grad_c0 ([0] unless LSTM), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
//   torch.ops.rnnfused._persistent_plan(cell, batch, hidden, dtype, device) -> str   the fit verdict and geometry
// (torch.ops.rnnfused._persistent_pack, the weight packing, is in pack.cpp: every build has it.)
// resets: [T, B] bool or None, as the layer ops take it (in-sequence resets; never with lengths).
// cell: a Cell::kName of csrc/common/cells.h. Any dtype runs (float64 / float32-without-TF32 in FMA mode); the automatic
// rule (persistent_supported) is stricter.
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../../common/cells.h"
#include "persistent.h"

namespace rnnfused {
namespace persistent {
namespace {

using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;

// fn(Cell{}) for the cell named `cell` (csrc/common/cells.h), returning what fn returns.
template <typename Fn>
auto with_cell(const std::string& cell, Fn&& fn) {
  std::optional<decltype(fn(LstmCell{}))> result;
  const bool found = visit_cell(cell, [&](auto c) { result.emplace(fn(c)); });
  TORCH_CHECK(found, "rnnfused persistent: cell must be one of ", cell_names(), ", got '", cell, "'");
  return std::move(*result);
}

int64_t gates_of(const std::string& cell) {
  return with_cell(cell, [](auto c) { return int64_t(decltype(c)::kGates); });
}

Tensor or_empty(const Tensor& t, const Tensor& like) { return t.defined() ? t : at::empty({0}, like.options()); }

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> forward_op(const std::string& cell, const Tensor& input,
                                                              const Tensor& h0, const OptTensor& c0, const Tensor& w_ih,
                                                              const Tensor& w_hh, const OptTensor& b_ih,
                                                              const OptTensor& b_hh, const OptTensor& lengths,
                                                              bool reverse, int64_t debug_stall_phase,
                                                              int64_t debug_spin_limit, const OptTensor& resets) {
  return with_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    const LayerArgs a = make_layer_args("rnnfused::_persistent_forward", Cell::kGates, input, h0,
                                        Cell::kHasCellState ? c0 : OptTensor(), w_ih, w_hh, b_ih, b_hh, std::nullopt,
                                        lengths, reverse, resets);
    TORCH_CHECK(!Cell::kHasCellState || a.c0.defined(), "rnnfused::_persistent_forward: an LSTM needs c0");
    DebugOptions debug;
    debug.stall_phase = static_cast<int>(debug_stall_phase);
    if (debug_spin_limit > 0) debug.spin_limit = static_cast<unsigned>(debug_spin_limit);
    const ForwardResult r = persistent_forward<Cell>(a, debug);
    return std::make_tuple(r.output, r.h_n, or_empty(r.c_n, input), r.saved, or_empty(r.cells, input));
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> backward_op(
    const std::string& cell, const Tensor& grad_output, const Tensor& grad_h_n, const OptTensor& grad_c_n,
    const Tensor& input, const Tensor& h0, const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& lengths, bool reverse, const Tensor& output, const Tensor& saved, const Tensor& cells,
    const OptTensor& resets) {
  constexpr const char* op = "rnnfused::_persistent_backward";
  return with_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    const LayerArgs a = make_layer_args(op, Cell::kGates, input, h0, Cell::kHasCellState ? c0 : OptTensor(), w_ih,
                                        w_hh, std::nullopt, std::nullopt, std::nullopt, lengths, reverse, resets);
    const auto dtype = input.scalar_type();
    ForwardResult f;
    f.output = check_saved(op, "output", output, {a.T, a.B, a.H}, dtype, input);
    f.saved = check_saved(op, "saved", saved, {a.T, a.B, Cell::kSaved * a.H}, dtype, input);
    Tensor gc;
    if (Cell::kHasCellState) {
      TORCH_CHECK(a.c0.defined() && grad_c_n.has_value(), op, ": an LSTM needs c0 and grad_c_n");
      f.cells = check_saved(op, "cells", cells, {a.T, a.B, a.H}, cell_dtype(dtype), input);
      gc = check_saved(op, "grad_c_n", *grad_c_n, {a.B, a.H}, dtype, input);
    }
    const Tensor gh = check_saved(op, "grad_h_n", grad_h_n, {a.B, a.H}, dtype, input);
    const Tensor go = check_saved(op, "grad_output", grad_output, {a.T, a.B, a.H}, dtype, input);
    const BackwardResult g = persistent_backward<Cell>(a, go, gh, gc, f);
    return std::make_tuple(g.grad_input, g.grad_h0, or_empty(g.grad_c0, input), g.grad_w_ih, g.grad_w_hh, g.grad_b_ih,
                           g.grad_b_hh);
  });
}

std::string plan_op(const std::string& cell, int64_t batch, int64_t hidden, at::ScalarType dtype, int64_t device) {
  TORCH_CHECK(at::cuda::is_available(), "rnnfused::_persistent_plan: needs a CUDA device");
  const int64_t G = gates_of(cell);
  const int index = device < 0 ? at::cuda::current_device() : static_cast<int>(device);
  const cudaDeviceProp& prop = *at::cuda::getDeviceProperties(index);
  LayerArgs a;  // sizes, dtype and device only: placeholders, as the dispatch query does
  a.G = G;
  a.H = a.H_out = hidden;
  a.B = batch;
  a.input = at::empty({1}, at::TensorOptions().dtype(dtype).device(at::kCUDA, index)).expand({1, batch, 1});
  std::string why;
  const bool ok = persistent_supported(a, prop, &why);
  std::string text = ok ? "persistent: yes" : "persistent: no (" + why + ")";
  for (Direction dir : {Direction::kForward, Direction::kBackward}) {
    const Plan p = plan_layer(G, hidden, batch, dtype, dir, prop);
    text += "\n" + (p.ok ? describe(p.geo) : std::string(dir == Direction::kForward ? "forward" : "backward") +
                                                 ": does not fit: " + p.why_not);
  }
  return text + "\nmath: " + (math_mode(dtype) == MathMode::kTensorCore ? "tensor cores" : "fma");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnfused, m) {
  m.def(
      "_persistent_forward(str cell, Tensor input, Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? lengths, bool reverse, int debug_stall_phase=-1, int debug_spin_limit=0, "
      "Tensor? resets=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "_persistent_backward(str cell, Tensor grad_output, Tensor grad_h_n, Tensor? grad_c_n, Tensor input, Tensor h0, "
      "Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? lengths, bool reverse, Tensor output, Tensor saved, "
      "Tensor cells, Tensor? resets=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("_persistent_plan(str cell, int batch, int hidden, ScalarType dtype, int device=-1) -> str", &plan_op);
}

TORCH_LIBRARY_IMPL(rnnfused, CUDA, m) {
  m.impl("_persistent_forward", &forward_op);
  m.impl("_persistent_backward", &backward_op);
}

}  // namespace persistent
}  // namespace rnnfused
