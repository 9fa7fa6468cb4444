// The eager step of a Fused*Cell loop on the cpu backend, called from Python as a plain function
// (rnnfused._C._cpu_cell_step_<cell>) instead of through torch.ops: no boxing of the arguments, no dispatcher, and an
// autograd node written in C++ (a torch::autograd::Function) instead of a Python autograd.Function. At B = 1 the step's
// arithmetic is a microsecond; what a cell loop paid per step was those layers (measured in benchmarks/results/
// cells_cpu.md). The math is the single-step op's own (cell_ops.h: cell_forward / cell_backward), so the eager step
// and the op cannot differ.
//
// Used only where nothing needs to see an op: rnnfused/_cell_ops.py::cell_step does not call it while compiling or
// under torch.func transforms / forward-mode AD, and the function itself returns an empty list (the caller then runs
// the op) under JIT tracing, CPU autocast, inside a TorchDispatchMode, or with tensor subclasses. Those checks are
// here because they cost nanoseconds in C++ and about a microsecond per step from Python.
//
// Gradients that are differentiable themselves (backward with create_graph=True) go through the op: the step is
// recomputed with rnnfused::<cell>_cell, whose registered autograd (rnnfused/_cell_ops.py) differentiates the cell's
// reference equations.
#pragma once

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/autograd.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/extension.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "cell_ops.h"

namespace rnnfused {
namespace eager {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The forward arguments of the step, in order (absent ones are undefined tensors).
enum CellArg { kInput, kHx, kCx, kWih, kWhh, kBih, kBhh, kNumCellArgs };

inline at::Tensor value_or_undefined(const std::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); }

// Whether the dispatcher must see this call: JIT tracing (the trace records ops), CPU autocast (the op's autocast
// kernel casts), a TorchDispatchMode, or a tensor that is not a plain dense one (a subclass, a fake or
// functorch-wrapped tensor).
inline bool needs_dispatcher(std::initializer_list<const at::Tensor*> tensors) {
  if (torch::jit::tracer::isTracing() || at::autocast::is_autocast_enabled(at::kCPU)) return true;
  if (c10::impl::TorchDispatchModeTLS::stack_len() > 0) return true;
  static const c10::DispatchKeySet plain_keys({c10::DispatchKey::CPU, c10::DispatchKey::AutogradCPU,
                                               c10::DispatchKey::ADInplaceOrView, c10::DispatchKey::AutocastCPU});
  // Removing keys keeps the backend bits: a plain CPU tensor leaves exactly the CPU bit.
  static const c10::DispatchKeySet cpu_bit(c10::BackendComponent::CPUBit);
  for (const at::Tensor* t : tensors) {
    if (t->defined() && (t->key_set() - plain_keys) != cpu_bit) return true;
  }
  return false;
}

template <typename Cell>
const c10::OperatorHandle& cell_op_handle() {
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow(("rnnfused::" + cell_forward_name<Cell>()).c_str(), "");
  return op;
}

// Differentiable gradients (create_graph=True) of the forward arguments `needs` asks for: the step recomputed through
// the op, whose autograd differentiates the reference equations, then autograd.grad with create_graph.
template <typename Cell>
variable_list differentiable_grads(const variable_list& args, const at::Tensor& grad_h, const at::Tensor& grad_c,
                                   const std::array<bool, kNumCellArgs>& needs) {
  torch::jit::Stack stack{args[kInput], args[kHx]};
  if (Cell::kHasCellState) stack.emplace_back(args[kCx]);
  stack.emplace_back(args[kWih]);
  stack.emplace_back(args[kWhh]);
  for (const int i : {kBih, kBhh}) stack.emplace_back(args[i].defined() ? c10::IValue(args[i]) : c10::IValue());
  cell_op_handle<Cell>().callBoxed(&stack);  // -> h', [c'], [saved]
  variable_list outputs{stack[0].toTensor()}, grad_outputs{grad_h};
  if (Cell::kHasCellState && grad_c.defined()) {
    outputs.push_back(stack[1].toTensor());
    grad_outputs.push_back(grad_c);
  }
  variable_list wrt;
  std::vector<int> index;
  for (int i = 0; i < kNumCellArgs; ++i) {
    if (needs[i] && args[i].defined()) {
      wrt.push_back(args[i]);
      index.push_back(i);
    }
  }
  variable_list grads(kNumCellArgs);
  if (wrt.empty()) return grads;
  const variable_list got = torch::autograd::grad(outputs, wrt, grad_outputs, /*retain_graph=*/true,
                                                  /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t j = 0; j < wrt.size(); ++j) grads[index[j]] = got[j].defined() ? got[j] : at::zeros_like(wrt[j]);
  return grads;
}

// The autograd node of one eager step. Outputs: h', [c'], [saved] (as the op). Saved for backward: the 7 forward
// arguments, then h', c', saved (undefined where absent).
template <typename Pointwise, typename Cell>
struct CellStepFunction : public torch::autograd::Function<CellStepFunction<Pointwise, Cell>> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& hx,
                               const std::optional<at::Tensor>& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
                               const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh) {
    const at::AutoDispatchBelowADInplaceOrView below;  // the outputs are fresh tensors, not views of the inputs
    const CellArgs a = make_cell_args<Cell>(cell_forward_name<Cell>().c_str(), input, hx, value_or_undefined(cx),
                                            w_ih, w_hh, b_ih, b_hh);
    CellForward r = cell_forward<Cell, Pointwise>(a);
    ctx->set_materialize_grads(false);  // an unused c' gives an undefined gradient, not a [B, H] zero fill
    ctx->save_for_backward({input, hx, value_or_undefined(cx), w_ih, w_hh, value_or_undefined(b_ih),
                            value_or_undefined(b_hh), r.h, r.c, r.saved});
    variable_list outputs{r.h};  // h', [c'], [saved]: the op's outputs
    if (Cell::kHasCellState) outputs.push_back(r.c);
    if (Cell::kSaved > 0) {
      outputs.push_back(r.saved);
      ctx->mark_non_differentiable({r.saved});
    }
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const variable_list args(saved.begin(), saved.begin() + kNumCellArgs);
    // needs_input_grad counts the tensor arguments given (an absent optional is not one).
    std::array<bool, kNumCellArgs> needs{};
    for (int i = 0, edge = 0; i < kNumCellArgs; ++i) {
      if (args[i].defined()) needs[i] = ctx->needs_input_grad(edge++);
    }
    const at::Tensor grad_h = grads[0].defined() ? grads[0] : at::zeros_like(args[kHx]);
    const at::Tensor grad_c = Cell::kHasCellState ? grads[1] : at::Tensor();
    if (at::GradMode::is_enabled()) return differentiable_grads<Cell>(args, grad_h, grad_c, needs);

    const at::Tensor &h = saved[kNumCellArgs], &c = saved[kNumCellArgs + 1], &activations = saved[kNumCellArgs + 2];
    const at::AutoDispatchBelowADInplaceOrView below;
    const char* name = "rnnfused::eager_cell_step backward";
    const CellArgs a = make_cell_args<Cell>(name, args[kInput], args[kHx], args[kCx], args[kWih], args[kWhh],
                                            std::nullopt, std::nullopt);
    const bool has_bias = args[kBih].defined();
    const CellGradMask mask({needs[kInput], needs[kHx], needs[kWih] || needs[kWhh],
                             has_bias && (needs[kBih] || needs[kBhh])});
    CellGrads g = cell_backward<Cell, Pointwise>(a, grad_h.contiguous(), grad_c.defined() ? grad_c.contiguous() : grad_c,
                                                 activations, c, h, mask);
    const auto keep = [&needs](int i, at::Tensor& t) { return needs[i] ? std::move(t) : at::Tensor(); };
    return {keep(kInput, g.input), keep(kHx, g.hx), keep(kCx, g.cx), keep(kWih, g.w_ih),
            keep(kWhh, g.w_hh), keep(kBih, g.b_ih), keep(kBhh, g.b_hh)};
  }
};

// One step: (h', c') for cells with a cell state, (h',) otherwise; an empty list where the op must run instead
// (needs_dispatcher). Records the C++ autograd node when grad mode is on and an argument requires grad.
template <typename Pointwise, typename Cell>
std::vector<at::Tensor> cell_step(const at::Tensor& input, const at::Tensor& hx, const std::optional<at::Tensor>& cx,
                                  const at::Tensor& w_ih, const at::Tensor& w_hh,
                                  const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh) {
  const at::Tensor c0 = value_or_undefined(cx), bi = value_or_undefined(b_ih), bh = value_or_undefined(b_hh);
  if (needs_dispatcher({&input, &hx, &c0, &w_ih, &w_hh, &bi, &bh})) return {};
  const bool record = at::GradMode::is_enabled() &&
                      (input.requires_grad() || hx.requires_grad() || (c0.defined() && c0.requires_grad()) ||
                       w_ih.requires_grad() || w_hh.requires_grad() || (bi.defined() && bi.requires_grad()) ||
                       (bh.defined() && bh.requires_grad()));
  std::vector<at::Tensor> out;
  if (record) {
    variable_list r = CellStepFunction<Pointwise, Cell>::apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
    out = {std::move(r[0])};
    if (Cell::kHasCellState) out.push_back(std::move(r[1]));
    return out;
  }
  const at::AutoDispatchBelowADInplaceOrView below;
  const CellArgs a = make_cell_args<Cell>(cell_forward_name<Cell>().c_str(), input, hx, c0, w_ih, w_hh, b_ih, b_hh);
  CellForward r = cell_forward<Cell, Pointwise>(a);
  out = {std::move(r.h)};
  if (Cell::kHasCellState) out.push_back(std::move(r.c));
  return out;
}

// A whole Fused*Cell forward in the common case, else [] (the module then runs its general path, which has nn's
// checks and error texts): batched input [B, I] with B > 0 and I == input_size, hx None (zeros) or [B, H] (LSTM: h
// and c, both given or both None) with H == hidden_size > 0, one floating dtype throughout, plain CPU tensors. At
// B = 1 the module's Python around a step (rank, size, dtype and device checks, the backend choice) cost about as
// much as the step itself.
template <typename Pointwise, typename Cell>
std::vector<at::Tensor> cell_module_forward(const at::Tensor& input, const std::optional<at::Tensor>& hx,
                                            const std::optional<at::Tensor>& cx, const at::Tensor& w_ih,
                                            const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                                            const std::optional<at::Tensor>& b_hh, int64_t input_size,
                                            int64_t hidden_size) {
  if (input.dim() != 2 || input.size(0) == 0 || input.size(1) != input_size || hidden_size <= 0) return {};
  const auto dtype = input.scalar_type();
  if (!at::isFloatingType(dtype) || w_ih.scalar_type() != dtype || w_hh.scalar_type() != dtype) return {};
  if (Cell::kHasCellState ? hx.has_value() != cx.has_value() : cx.has_value()) return {};
  const auto is_state = [&](const at::Tensor& t) {
    return t.dim() == 2 && t.size(0) == input.size(0) && t.size(1) == hidden_size && t.scalar_type() == dtype;
  };
  if ((hx.has_value() && !is_state(*hx)) || (cx.has_value() && !is_state(*cx))) return {};
  // Everything plain CPU (zeros are made on input's device: only once input is known to be a CPU tensor).
  if (needs_dispatcher({&input, &w_ih, &w_hh})) return {};
  const auto zeros = [&] { return at::zeros({input.size(0), hidden_size}, input.options()); };
  const at::Tensor h = hx.has_value() ? *hx : zeros();
  const std::optional<at::Tensor> c =
      Cell::kHasCellState ? std::optional<at::Tensor>(cx.has_value() ? *cx : zeros()) : std::nullopt;
  return cell_step<Pointwise, Cell>(input, h, c, w_ih, w_hh, b_ih, b_hh);
}

// Defines `<prefix><cell>` (e.g. _cpu_cell_step_lstm) and `<prefix>module_<cell>` (cell_module_forward) for every cell
// of the registry.
template <typename Pointwise>
void bind_cell_steps(pybind11::module_& m, const std::string& prefix) {
  for_each_cell([&](auto cell) {
    using Cell = decltype(cell);
    m.def((prefix + Cell::kName).c_str(), &cell_step<Pointwise, Cell>,
          "One eager Fused*Cell step without the dispatcher (private; rnnfused/_cell_ops.py::cell_step)");
    m.def((prefix + "module_" + Cell::kName).c_str(), &cell_module_forward<Pointwise, Cell>,
          "A Fused*Cell forward in the common case, or [] (private; rnnfused/_cell_ops.py::cpu_module_forward)");
  });
}

}  // namespace eager
}  // namespace rnnfused
