// The single-step cell ops `rnnfused::{lstm,gru,rnn_tanh,rnn_relu}_cell` and their `*_backward` (schemas: the cell
// block at the end of csrc/ops.cpp): one step of a cell, as the Fused*Cell modules run it in a Python loop.
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
#include <tuple>
#include <type_traits>

#include "../common/cell_math.h"
#include "../common/step.h"
#include "../sequence/layer_args.h"

namespace rnnfused {

// The op name of a cell kind, for error messages ("lstm", "gru", "rnn_tanh", "rnn_relu").
template <typename Cell>
const char* cell_op_kind() {
  if (std::is_same<Cell, LstmCell>::value) return "lstm";
  if (std::is_same<Cell, GruCell>::value) return "gru";
  return std::is_same<Cell, RnnReluCell>::value ? "rnn_relu" : "rnn_tanh";
}

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
CellArgs make_cell_args(const std::string& op, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                        const at::Tensor& w_ih, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                        const std::optional<at::Tensor>& b_hh) {
  constexpr int64_t G = Cell::kGates;
  const char* name = op.c_str();
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

  at::Tensor gates = at::empty({2, B, GH}, opts);  // [2, B, G*H]  x W_ihᵀ, h W_hhᵀ (biases: in the pass)
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

  at::Tensor dgx = at::empty({B, GH}, opts);                                       // [B, G*H]
  at::Tensor dgh = Cell::kSplitRecurrentGrad ? at::empty({B, GH}, opts) : dgx;     // [B, G*H]
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
  g.input = mask.input ? at::mm(dgx, a.w_ih) : none();                 // [B, I]
  g.hx = mask.hx ? dh_direct.addmm_(dgh, a.w_hh) : none();             // [B, H]  the part past W_hh + GRU's z·dh'
  g.cx = Cell::kHasCellState ? dc.to(a.input.scalar_type()) : none();  // [B, H]
  g.w_ih = mask.weights ? at::mm(dgx.t(), a.input) : none();           // [G*H, I]
  g.w_hh = mask.weights ? at::mm(dgh.t(), a.hx) : none();              // [G*H, H]
  g.b_ih = mask.biases ? dgx.sum(0) : none();                          // [G*H]
  g.b_hh = !mask.biases ? none() : Cell::kSplitRecurrentGrad ? dgh.sum(0) : g.b_ih.clone();  // [G*H]
  return g;
}

// The op implementations over a Pointwise policy (CpuPointwise of csrc/cpu, cuda::CudaPointwise of csrc/cuda).
template <typename Pointwise>
struct CellOps {
  using Tensor = at::Tensor;
  using OptTensor = std::optional<at::Tensor>;
  using Grads6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

  // -> h' [B,H], c' [B,H], saved [B,4H]
  static std::tuple<Tensor, Tensor, Tensor> lstm_cell(const Tensor& input, const Tensor& hx, const Tensor& cx,
                                                      const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                                                      const OptTensor& b_hh) {
    const at::OptionalDeviceGuard guard(at::device_of(input));  // custom ops get no device guard from the dispatcher
    const CellArgs a = make_cell_args<LstmCell>(op_name<LstmCell>(false), input, hx, cx, w_ih, w_hh, b_ih, b_hh);
    CellForward r = cell_forward<LstmCell, Pointwise>(a);
    return {r.h, r.c, r.saved};
  }

  // -> h' [B,H], saved [B,4H]
  static std::tuple<Tensor, Tensor> gru_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                                             const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
    const at::OptionalDeviceGuard guard(at::device_of(input));
    const CellArgs a = make_cell_args<GruCell>(op_name<GruCell>(false), input, hx, Tensor(), w_ih, w_hh, b_ih, b_hh);
    CellForward r = cell_forward<GruCell, Pointwise>(a);
    return {r.h, r.saved};
  }

  // -> h' [B,H]
  template <typename Cell>
  static Tensor rnn_cell(const Tensor& input, const Tensor& hx, const Tensor& w_ih, const Tensor& w_hh,
                         const OptTensor& b_ih, const OptTensor& b_hh) {
    const at::OptionalDeviceGuard guard(at::device_of(input));
    const CellArgs a = make_cell_args<Cell>(op_name<Cell>(false), input, hx, Tensor(), w_ih, w_hh, b_ih, b_hh);
    return cell_forward<Cell, Pointwise>(a).h;
  }

  // -> grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_cell_backward(
      const Tensor& grad_h, const OptTensor& grad_c, const Tensor& input, const Tensor& hx, const Tensor& cx,
      const Tensor& w_ih, const Tensor& w_hh, const Tensor& saved, const Tensor& c, std::array<bool, 4> output_mask) {
    const at::OptionalDeviceGuard guard(at::device_of(input));
    const std::string op = op_name<LstmCell>(true);
    const CellArgs a = make_cell_args<LstmCell>(op, input, hx, cx, w_ih, w_hh, std::nullopt, std::nullopt);
    const auto dtype = input.scalar_type();
    const Tensor gh = check_saved(op.c_str(), "grad_h", grad_h, {a.B, a.H}, dtype, input);
    const Tensor gc = grad_c.has_value() && grad_c->defined()
                          ? check_saved(op.c_str(), "grad_c", *grad_c, {a.B, a.H}, dtype, input)
                          : Tensor();
    const Tensor sv = check_saved(op.c_str(), "saved", saved, {a.B, LstmCell::kSaved * a.H}, dtype, input);
    const Tensor cn = check_saved(op.c_str(), "c", c, {a.B, a.H}, dtype, input);
    const CellGrads g = cell_backward<LstmCell, Pointwise>(a, gh, gc, sv, cn, Tensor(), CellGradMask(output_mask));
    return {g.input, g.hx, g.cx, g.w_ih, g.w_hh, g.b_ih, g.b_hh};
  }

  // -> grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  static Grads6 gru_cell_backward(const Tensor& grad_h, const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                                  const Tensor& w_hh, const Tensor& saved, std::array<bool, 4> output_mask) {
    const at::OptionalDeviceGuard guard(at::device_of(input));
    const std::string op = op_name<GruCell>(true);
    const CellArgs a = make_cell_args<GruCell>(op, input, hx, Tensor(), w_ih, w_hh, std::nullopt, std::nullopt);
    const Tensor sv = check_saved(op.c_str(), "saved", saved, {a.B, GruCell::kSaved * a.H}, input.scalar_type(), input);
    return hidden_only_grads<GruCell>(op, a, grad_h, sv, Tensor(), output_mask);
  }

  // -> grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  template <typename Cell>
  static Grads6 rnn_cell_backward(const Tensor& grad_h, const Tensor& input, const Tensor& hx, const Tensor& w_ih,
                                  const Tensor& w_hh, const Tensor& h, std::array<bool, 4> output_mask) {
    const at::OptionalDeviceGuard guard(at::device_of(input));
    const std::string op = op_name<Cell>(true);
    const CellArgs a = make_cell_args<Cell>(op, input, hx, Tensor(), w_ih, w_hh, std::nullopt, std::nullopt);
    const Tensor hn = check_saved(op.c_str(), "h", h, {a.B, a.H}, input.scalar_type(), input);
    return hidden_only_grads<Cell>(op, a, grad_h, Tensor(), hn, output_mask);
  }

 private:
  template <typename Cell>
  static std::string op_name(bool backward) {
    return std::string("rnnfused::") + cell_op_kind<Cell>() + (backward ? "_cell_backward" : "_cell");
  }

  template <typename Cell>
  static Grads6 hidden_only_grads(const std::string& op, const CellArgs& a, const Tensor& grad_h, const Tensor& saved,
                                  const Tensor& h, const std::array<bool, 4>& output_mask) {
    const Tensor gh = check_saved(op.c_str(), "grad_h", grad_h, {a.B, a.H}, a.input.scalar_type(), a.input);
    const CellGrads g = cell_backward<Cell, Pointwise>(a, gh, Tensor(), saved, Tensor(), h, CellGradMask(output_mask));
    return {g.input, g.hx, g.w_ih, g.w_hh, g.b_ih, g.b_hh};
  }
};

// Registers the cell ops with the implementations of `Ops` (a CellOps), inside TORCH_LIBRARY_IMPL.
template <typename Ops>
void register_cell_ops(torch::Library& m) {
  m.impl("lstm_cell", &Ops::lstm_cell);
  m.impl("lstm_cell_backward", &Ops::lstm_cell_backward);
  m.impl("gru_cell", &Ops::gru_cell);
  m.impl("gru_cell_backward", &Ops::gru_cell_backward);
  m.impl("rnn_tanh_cell", &Ops::template rnn_cell<RnnTanhCell>);
  m.impl("rnn_tanh_cell_backward", &Ops::template rnn_cell_backward<RnnTanhCell>);
  m.impl("rnn_relu_cell", &Ops::template rnn_cell<RnnReluCell>);
  m.impl("rnn_relu_cell_backward", &Ops::template rnn_cell_backward<RnnReluCell>);
}

}  // namespace rnnfused
