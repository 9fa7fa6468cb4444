// The single-step cell ops `rnnfused::<cell>_cell` and `<cell>_cell_backward` of every cell of the registry (schemas:
// csrc/cell/cell_op_schemas.h, defined in csrc/ops.cpp): one step of a cell, as the Fused*Cell modules run it in a
// Python loop. Boxed kernels read the arguments in schema order from the cell's traits, as the layer ops do
// (csrc/sequence/layer_ops.h).
//
// A single step needs none of the sequence driver's machinery (no [T, ...] buffers, no previous_states, no masks or
// lengths, no running-state copies):
//   forward:  x W_ihᵀ and h W_hhᵀ (two GEMMs into one buffer) + ONE fused pointwise pass (biases, gates, state
//             update, the activations backward needs);
//   backward: ONE fused pointwise pass + only the GEMMs whose gradients autograd asks for (output_mask).
// The pointwise passes are the sequence ops' own (a `Pointwise` policy over ForwardStep/BackwardStep of
// csrc/common/step.h with t = 0 and no lengths: the CPU loops, or one launch of the CUDA kernels), so the per-element
// math stays in csrc/common/cell_math.h. Everything here is generic over the Cell traits.
//
// Shapes: B batch, I input size, H hidden size, G gates (Cell::kGates), S saved values per unit (Cell::kSaved).
#pragma once

#include <ATen/ATen.h>
#include <ATen/DeviceGuard.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>

#include "../common/cells.h"
#include "../common/step.h"
#include "../cpu/fused_runner.h"
#include "../cpu/recycled_buffers.h"
#include "../sequence/layer_args.h"
#include "../sequence/layer_ops.h"
#include "cell_op_schemas.h"

namespace rnnfused {

// The checked, contiguous arguments of one step.
struct CellArgs {
  at::Tensor input;  // [B, I]
  at::Tensor hx;     // [B, H]
  at::Tensor cx;     // [B, H] (LSTM) or undefined
  at::Tensor w_ih;   // [G*H, I]
  at::Tensor w_hh;   // [G*H, H]
  at::Tensor b_ih;   // [G*H] or undefined
  at::Tensor b_hh;   // [G*H] or undefined
  int64_t B = 0, I = 0, H = 0;
};

// Checks every argument of a raw call (each error names the argument and what was expected).
template <typename Cell>
CellArgs make_cell_args(const char* name, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                        const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                        const std::optional<at::Tensor>& b_hh) {
  constexpr int64_t G = Cell::kGates;
  TORCH_CHECK(input.dim() == 2, name, ": input must be 2-D [batch, input_size], got ", input.dim(), "-D with shape ",
              input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), name,
              ": input must have a floating dtype (float64, float32, float16, bfloat16), got ", input.scalar_type());
  TORCH_CHECK(input.size(0) > 0, name, ": input must have batch > 0, got shape ", input.sizes());
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) > 0 && w_hh.size(0) % G == 0 && w_hh.size(1) == w_hh.size(0) / G,
              name, ": w_hh must be 2-D [", G, "*hidden_size, hidden_size], got shape ", w_hh.sizes());
  CellArgs a;
  a.B = input.size(0);
  a.I = input.size(1);
  a.H = w_hh.size(1);
  const int64_t GH = G * a.H;
  const auto dtype = input.scalar_type();
  a.input = input.contiguous();
  a.w_ih = check_saved(name, "w_ih", w_ih, {GH, a.I}, dtype, input);
  a.w_hh = check_saved(name, "w_hh", w_hh, {GH, a.H}, dtype, input);
  a.hx = check_saved(name, "hx", hx, {a.B, a.H}, dtype, input);
  if (Cell::kHasCellState) a.cx = check_saved(name, "cx", cx, {a.B, a.H}, dtype, input);
  const bool has_ih = b_ih.has_value() && b_ih->defined(), has_hh = b_hh.has_value() && b_hh->defined();
  TORCH_CHECK(has_ih == has_hh, name, ": b_ih and b_hh must be given together or both be None");
  if (has_ih) {
    a.b_ih = check_saved(name, "b_ih", *b_ih, {GH}, dtype, input);
    a.b_hh = check_saved(name, "b_hh", *b_hh, {GH}, dtype, input);
  }
  return a;
}

// A step's large buffers and its weight gradients: recycled on the CPU (csrc/cpu/recycled_buffers.h: a cell loop asks
// for the same sizes at every step, and fresh ones page-faulted), plain at::empty elsewhere.
inline at::Tensor step_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return opts.device().is_cpu() ? cpu::recycled_empty(sizes, opts) : at::empty(sizes, opts);
}

// Batch rows from which a step's backward GEMMs run in the fused CPU path's matmul. Measured (1 thread, float32 /
// float64, LSTM shapes H = I ∈ {51, 128, 256}, against ATen's mm, i.e. MKL): at B = 1 its per-call packing of the
// [G·H, I] weight makes dx = dgates · W_ih 0.56-0.81x as fast (MKL reads the weight once, as a GEMV); from B = 4 on
// it is 1.0-1.26x (dx) and 1.04-1.62x (the weight gradients) as fast (benchmarks/results/cells_cpu.md).
constexpr int64_t kFusedStepGemmMinBatch = 4;

// out = A · B (out += A · B with accumulate), A = x or xᵀ (x_transposed), for a step's backward, x = [B, ...]: the
// fused path's matmul on the CPU for float32/float64 from kFusedStepGemmMinBatch rows, else ATen's mm. x and out
// contiguous.
inline void step_gemm(const at::Tensor& x, bool x_transposed, const at::Tensor& y, at::Tensor out, bool accumulate) {
  const auto dtype = x.scalar_type();
  if (x.device().is_cpu() && (dtype == at::kFloat || dtype == at::kDouble) && x.size(0) >= kFusedStepGemmMinBatch) {
    cpu::fused_matmul_into(x, x_transposed, y, out, accumulate);
  } else if (accumulate) {
    out.addmm_(x_transposed ? x.t() : x, y);
  } else {
    at::mm_out(out, x_transposed ? x.t() : x, y);
  }
}

// step_gemm into a fresh step_empty tensor.
inline at::Tensor step_gemm(const at::Tensor& x, bool x_transposed, const at::Tensor& y) {
  at::Tensor out = step_empty({x.size(x_transposed ? 1 : 0), y.size(1)}, x.options());
  step_gemm(x, x_transposed, y, out, false);
  return out;
}

struct CellForward {
  at::Tensor h;      // [B, H]    h'
  at::Tensor c;      // [B, H]    c' (LSTM), in the input's dtype
  at::Tensor saved;  // [B, S*H]  activations for backward
};

template <typename Cell, typename Pointwise>
CellForward cell_forward(const CellArgs& a) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t B = a.B, H = a.H, GH = G * a.H;
  const auto opts = a.input.options();
  const auto cell_opts = opts.dtype(cell_dtype(a.input.scalar_type()));

  at::Tensor gates = step_empty({2, B, GH}, opts);  // [2, B, G*H]  x W_ihᵀ, h W_hhᵀ (biases: in the pass)
  at::Tensor xg = gates.select(0, 0), hg = gates.select(0, 1);
  at::mm_out(xg, a.input, a.w_ih.t());
  at::mm_out(hg, a.hx, a.w_hh.t());
  const at::Tensor no_bias = a.b_ih.defined() ? at::Tensor() : at::zeros({GH}, opts);  // [G*H]
  const at::Tensor& b_ih = a.b_ih.defined() ? a.b_ih : no_bias;
  const at::Tensor& b_hh = a.b_hh.defined() ? a.b_hh : no_bias;
  // The pass reads and writes the cell state in the arithmetic dtype (a no-op conversion for float32/float64).
  const at::Tensor c_prev = Cell::kHasCellState ? a.cx.to(cell_opts.dtype()) : at::Tensor();          // [B, H]
  at::Tensor c_new = Cell::kHasCellState ? at::empty({B, H}, cell_opts) : at::Tensor();                // [B, H]

  CellForward r;
  r.h = at::empty({B, H}, opts);
  r.saved = at::empty({B, S * H}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "rnnfused_cell_forward", [&] {
    using T_ = scalar_t;
    using C_ = at::opmath_type<scalar_t>;
    ForwardStep<T_, C_> st;
    st.batch = B;
    st.hidden = H;
    st.xg = xg.data_ptr<T_>();
    st.hg = hg.data_ptr<T_>();
    st.b_ih = b_ih.data_ptr<T_>();
    st.b_hh = b_hh.data_ptr<T_>();
    st.h_prev = a.hx.data_ptr<T_>();
    if (Cell::kHasCellState) {
      st.c_prev = c_prev.data_ptr<C_>();
      st.c_new = c_new.data_ptr<C_>();
    }
    st.saved = r.saved.data_ptr<T_>();
    st.out = r.h.data_ptr<T_>();
    Pointwise::template forward<Cell>(st);
  });
  if (Cell::kHasCellState) r.c = c_new.to(a.input.scalar_type());
  return r;
}

// Which gradients the backward computes (autograd's needs_input_grad): the others come back as empty [0] tensors.
// The pointwise pass runs in any case, and LSTM's grad_cx falls out of it.
struct CellGradMask {
  bool input = true, hx = true, weights = true, biases = true;
  explicit CellGradMask(const std::array<bool, 4>& m) : input(m[0]), hx(m[1]), weights(m[2]), biases(m[3]) {}
};

struct CellGrads {
  at::Tensor input, hx, cx, w_ih, w_hh, b_ih, b_hh;
};

// grad_h [B, H] dL/dh'; grad_c [B, H] dL/dc' (LSTM; undefined: zero); saved [B, S*H], c [B, H] (c', LSTM) and
// h [B, H] (h', read by the Elman cell) as the forward returned them.
template <typename Cell, typename Pointwise>
CellGrads cell_backward(const CellArgs& a, const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& saved,
                        const at::Tensor& c, const at::Tensor& h, const CellGradMask& mask) {
  constexpr int64_t G = Cell::kGates, S = Cell::kSaved;
  const int64_t B = a.B, H = a.H, GH = G * a.H;
  const auto opts = a.input.options();
  const auto cell_opts = opts.dtype(cell_dtype(a.input.scalar_type()));

  at::Tensor dgx = step_empty({B, GH}, opts);                                      // [B, G*H]
  at::Tensor dgh = Cell::kSplitRecurrentGrad ? step_empty({B, GH}, opts) : dgx;    // [B, G*H]
  at::Tensor dh_direct = at::empty({B, H}, opts);                                  // [B, H]
  // A cell has no output besides h', so the pass's "gradient of the output" is zero: dout = grad_h + 0.
  const at::Tensor no_output_grad = at::zeros({B, H}, opts);                       // [B, H]
  at::Tensor dc, c_new, c_prev;                                                    // [B, H] each, cell dtype
  if (Cell::kHasCellState) {
    dc = grad_c.defined() ? grad_c.to(cell_opts.dtype()).clone(at::MemoryFormat::Contiguous)
                          : at::zeros({B, H}, cell_opts);  // updated in place: dL/dc' in, dL/dc out
    c_new = c.to(cell_opts.dtype());
    c_prev = a.cx.to(cell_opts.dtype());
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "rnnfused_cell_backward", [&] {
    using T_ = scalar_t;
    using C_ = at::opmath_type<scalar_t>;
    BackwardStep<T_, C_> st;
    st.batch = B;
    st.hidden = H;
    st.out_size = H;
    st.dh_in = grad_h.data_ptr<T_>();
    st.grad_out = no_output_grad.data_ptr<T_>();
    st.saved = S > 0 ? saved.data_ptr<T_>() : nullptr;
    if (Cell::kHasCellState) {
      st.c = c_new.data_ptr<C_>();
      st.c_prev = c_prev.data_ptr<C_>();
      st.dc = dc.data_ptr<C_>();
    }
    st.h_prev = a.hx.data_ptr<T_>();
    st.out = h.defined() ? h.data_ptr<T_>() : nullptr;
    st.dgx = dgx.data_ptr<T_>();
    st.dgh = dgh.data_ptr<T_>();
    st.dh_direct = dh_direct.data_ptr<T_>();
    Pointwise::template backward<Cell>(st);
  });

  const auto none = [&opts] { return at::empty({0}, opts); };  // a fresh one per output: outputs must not alias
  CellGrads g;
  // Autograd adds the weight gradients up over the steps and frees them: recycled blocks (step_empty).
  g.w_ih = mask.weights ? step_gemm(dgx, true, a.input) : none();      // [G*H, I]
  g.w_hh = mask.weights ? step_gemm(dgh, true, a.hx) : none();         // [G*H, H]
  g.input = mask.input ? step_gemm(dgx, false, a.w_ih) : none();       // [B, I]
  if (mask.hx) step_gemm(dgh, false, a.w_hh, dh_direct, true);
  g.hx = mask.hx ? dh_direct : none();                                 // [B, H]  the part past W_hh + GRU's z·dh'
  g.cx = Cell::kHasCellState ? dc.to(a.input.scalar_type()) : none();  // [B, H]
  g.b_ih = mask.biases ? dgx.sum(0) : none();                          // [G*H]
  g.b_hh = !mask.biases ? none() : Cell::kSplitRecurrentGrad ? dgh.sum(0) : g.b_ih.clone();  // [G*H]
  return g;
}

namespace detail {

// <name>_cell(input, hx, [cx], w_ih, w_hh, b_ih?, b_hh?) -> (h, [c], [saved])
template <typename Pointwise, typename Cell>
void cell_forward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const std::string name = op.schema().name();
  const size_t count = op.schema().arguments().size();
  ArgReader in(stack, count);
  const at::Tensor input = in.tensor(), hx = in.tensor();
  const at::Tensor cx = Cell::kHasCellState ? in.tensor() : at::Tensor();
  const at::Tensor w_ih = in.tensor(), w_hh = in.tensor();
  const std::optional<at::Tensor> b_ih = in.optional_tensor(), b_hh = in.optional_tensor();
  torch::jit::drop(*stack, count);

  const at::OptionalDeviceGuard guard(at::device_of(input));  // custom ops get no device guard from the dispatcher
  const CellArgs a = make_cell_args<Cell>(name.c_str(), input, hx, cx, w_ih, w_hh, b_ih, b_hh);
  CellForward r = cell_forward<Cell, Pointwise>(a);
  torch::jit::push(*stack, std::move(r.h));
  if (Cell::kHasCellState) torch::jit::push(*stack, std::move(r.c));
  if (Cell::kSaved > 0) torch::jit::push(*stack, std::move(r.saved));
}

// <name>_cell_backward(grad_h, [grad_c?], input, hx, [cx], w_ih, w_hh, h, [saved], [c], output_mask)
//   -> (grad_input, grad_hx, [grad_cx], grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)
template <typename Pointwise, typename Cell>
void cell_backward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const std::string name = op.schema().name();
  const char* op_name = name.c_str();
  const size_t count = op.schema().arguments().size();
  ArgReader in(stack, count);
  const at::Tensor grad_h = in.tensor();
  const std::optional<at::Tensor> grad_c = Cell::kHasCellState ? in.optional_tensor() : std::nullopt;
  const at::Tensor input = in.tensor(), hx = in.tensor();
  const at::Tensor cx = Cell::kHasCellState ? in.tensor() : at::Tensor();
  const at::Tensor w_ih = in.tensor(), w_hh = in.tensor(), h = in.tensor();
  const at::Tensor saved = Cell::kSaved > 0 ? in.tensor() : at::Tensor();
  const at::Tensor c = Cell::kHasCellState ? in.tensor() : at::Tensor();
  const std::array<bool, 4> mask = in.booleans<4>();
  torch::jit::drop(*stack, count);

  const at::OptionalDeviceGuard guard(at::device_of(input));
  const CellArgs a = make_cell_args<Cell>(op_name, input, hx, cx, w_ih, w_hh, std::nullopt, std::nullopt);
  const auto dtype = input.scalar_type();
  const at::Tensor gh = check_saved(op_name, "grad_h", grad_h, {a.B, a.H}, dtype, input);
  const at::Tensor gc = grad_c.has_value() && grad_c->defined()
                            ? check_saved(op_name, "grad_c", *grad_c, {a.B, a.H}, dtype, input)
                            : at::Tensor();
  const at::Tensor hn = check_saved(op_name, "h", h, {a.B, a.H}, dtype, input);
  const at::Tensor sv =
      Cell::kSaved > 0 ? check_saved(op_name, "saved", saved, {a.B, Cell::kSaved * a.H}, dtype, input) : at::Tensor();
  const at::Tensor cn = Cell::kHasCellState ? check_saved(op_name, "c", c, {a.B, a.H}, dtype, input) : at::Tensor();
  CellGrads g = cell_backward<Cell, Pointwise>(a, gh, gc, sv, cn, hn, CellGradMask(mask));
  torch::jit::push(*stack, std::move(g.input), std::move(g.hx));
  if (Cell::kHasCellState) torch::jit::push(*stack, std::move(g.cx));
  torch::jit::push(*stack, std::move(g.w_ih), std::move(g.w_hh), std::move(g.b_ih), std::move(g.b_hh));
}

}  // namespace detail

// Registers the single-step forward and backward op of every cell with the pointwise passes of `Pointwise`
// (CpuPointwise of csrc/cpu, cuda::CudaPointwise of csrc/cuda), inside TORCH_LIBRARY_IMPL.
template <typename Pointwise>
void register_cell_ops(torch::Library& m) {
  for_each_cell([&m](auto cell) {
    using Cell = decltype(cell);
    m.impl(cell_forward_name<Cell>().c_str(),
           torch::CppFunction::makeFromBoxedFunction<&detail::cell_forward_kernel<Pointwise, Cell>>());
    m.impl(cell_backward_name<Cell>().c_str(),
           torch::CppFunction::makeFromBoxedFunction<&detail::cell_backward_kernel<Pointwise, Cell>>());
  });
}

}  // namespace rnnfused
