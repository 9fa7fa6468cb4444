// The LayerNorm LSTM/GRU recurrence ops (rnnfused::layernorm_<cell>, rnnfused::layernorm_<cell>_backward) for the
// CPU and the CUDA step-wise backend: schemas, semantics and the `saved` layout are those of
// rnnfused/_layer_norm_ops.py (the module docstring there is the spec; reference: rnnfused/reference.py).
//
// Written once against ATen, so the same code runs CPU and CUDA tensors: per step one GEMM (h W_hhᵀ) and a handful
// of row-wise ATen ops (the LayerNorms need whole-row reductions over G·H and H, which the plain cells' pointwise
// kernels do not have). The input-side LayerNorm and the biases are outside the op (one GEMM + one layer_norm over
// all steps, in Python). Backward runs the reverse sweep with the same row-wise ops and leaves every non-sequential
// reduction (dW_hh, dγ, dβ) to big GEMMs/sums after it. Everything is computed in the cell dtype (float32 for
// 16-bit inputs).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <utility>

#include "../common/cells.h"
#include "driver.h"
#include "layer_args.h"
#include "layer_ops.h"

namespace rnnfused {
namespace {

constexpr double kLayerNormEps = 1e-5;  // rnnfused.reference.LAYER_NORM_EPS

// X(Cell) for the cells with a LayerNorm variant (rnnfused/_cells.py: CellKind.layer_norm_step).
#define RNNF_FOR_EACH_LAYER_NORM_CELL(X) \
  X(::rnnfused::LstmCell)                \
  X(::rnnfused::GruCell)

template <typename Cell>
std::string op_name(bool backward) {
  return std::string("layernorm_") + Cell::kName + (backward ? "_backward" : "");
}

template <typename Cell>
std::string ln_forward_schema() {
  const bool c = Cell::kHasCellState;
  std::string s = op_name<Cell>(false) + "(Tensor xg, Tensor h0, " + (c ? "Tensor c0, " : "") + "Tensor w_hh, ";
  if (Cell::kSplitRecurrentGrad) s += "Tensor? b_hh, ";
  s += "Tensor ln_hh_weight, ";
  if (c) s += "Tensor ln_c_weight, Tensor ln_c_bias, ";
  s += "Tensor? lengths, bool reverse, bool train=True, Tensor? resets=None, Tensor? zoneout=None) -> ";
  return s + (c ? "(Tensor, Tensor, Tensor, Tensor, Tensor)" : "(Tensor, Tensor, Tensor)");
}

template <typename Cell>
std::string ln_backward_schema() {
  const bool c = Cell::kHasCellState;
  std::string s = op_name<Cell>(true) + "(Tensor grad_output, Tensor grad_h_n, " + (c ? "Tensor grad_c_n, " : "") +
                  "Tensor h0, " + (c ? "Tensor c0, " : "") + "Tensor w_hh, Tensor ln_hh_weight, " +
                  (c ? "Tensor ln_c_weight, Tensor ln_c_bias, " : "") +
                  "Tensor? lengths, bool reverse, Tensor output, Tensor saved, " + (c ? "Tensor cells, " : "") +
                  "Tensor? resets=None, Tensor? zoneout=None) -> (Tensor, Tensor, ";
  s += c ? "Tensor, Tensor, Tensor, Tensor, Tensor)" : "Tensor, Tensor, Tensor)";
  return s;
}

// The validated arguments of one call, every floating tensor in the cell dtype (float32 for 16-bit inputs).
struct LnArgs {
  LayerArgs seq;  // T, B, H, G, reverse, lengths, resets, zoneout: what driver.h's sequence helpers read
  at::Tensor h0, c0;    // [B, H]
  at::Tensor w_hh;      // [G*H, H]
  at::Tensor b_hh;      // [G*H] (GRU) or undefined
  at::Tensor g_hh;      // [G*H]  γ_hh
  at::Tensor g_c, b_c;  // [H]    γ_c, β_c (LSTM)
  at::ScalarType storage = at::kFloat;  // dtype of xg and the parameters (the results' dtype)
  at::ScalarType compute = at::kFloat;  // cell dtype
};

template <typename Cell>
LnArgs make_args(const char* op, const at::Tensor& xg, const at::Tensor& h0, const at::Tensor& c0,
                 const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh, const at::Tensor& g_hh,
                 const at::Tensor& g_c, const at::Tensor& b_c, const std::optional<at::Tensor>& lengths,
                 bool reverse, const std::optional<at::Tensor>& resets, const std::optional<at::Tensor>& zoneout) {
  TORCH_CHECK(xg.defined() && xg.dim() == 3, op, ": xg must be 3-D [seq_len, batch, gates*hidden], got ",
              xg.defined() ? xg.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(xg.scalar_type()), op, ": xg must have a floating dtype, got ", xg.scalar_type());
  const int64_t T = xg.size(0), B = xg.size(1), GH = xg.size(2);
  TORCH_CHECK(T > 0 && B > 0 && GH > 0, op, ": xg must not be empty, got shape ", xg.sizes());
  TORCH_CHECK(GH % Cell::kGates == 0, op, ": xg's last size must be ", Cell::kGates, "*hidden_size, got ", GH);
  const int64_t H = GH / Cell::kGates;
  const auto dt = xg.scalar_type();
  LnArgs a;
  a.storage = dt;
  a.compute = cell_dtype(dt);
  const auto in_cell = [&](const at::Tensor& t) { return t.to(a.compute).contiguous(); };
  a.h0 = in_cell(check_saved(op, "h0", h0, {B, H}, dt, xg));
  if (Cell::kHasCellState) a.c0 = in_cell(check_saved(op, "c0", c0, {B, H}, dt, xg));
  a.w_hh = in_cell(check_saved(op, "w_hh", w_hh, {GH, H}, dt, xg));
  if (b_hh.has_value() && b_hh->defined()) a.b_hh = in_cell(check_saved(op, "b_hh", *b_hh, {GH}, dt, xg));
  a.g_hh = in_cell(check_saved(op, "ln_hh_weight", g_hh, {GH}, dt, xg));
  if (Cell::kHasCellState) {
    a.g_c = in_cell(check_saved(op, "ln_c_weight", g_c, {H}, dt, xg));
    a.b_c = in_cell(check_saved(op, "ln_c_bias", b_c, {H}, dt, xg));
  }
  LayerArgs& s = a.seq;
  s.input = xg;
  s.T = T, s.B = B, s.H = H, s.H_out = H, s.G = Cell::kGates, s.I = GH;
  s.reverse = reverse;
  if (lengths.has_value() && lengths->defined()) s.lengths = checked_lengths(op, *lengths, xg);
  if (resets.has_value() && resets->defined()) {
    TORCH_CHECK(!s.lengths.defined(), op, ": resets cannot be combined with lengths");
    s.resets = check_saved(op, "resets", *resets, {T, B}, at::kBool, xg);
  }
  if (zoneout.has_value() && zoneout->defined()) {
    s.zoneout = check_saved(op, "zoneout", *zoneout, {Cell::kHasCellState ? 2 : 1, T, B, H}, a.compute, xg);
  }
  return a;
}

// Row-wise LayerNorm without affine: v [B, N] -> (x̂ [B, N], rstd [B, 1]), biased variance.
std::pair<at::Tensor, at::Tensor> normalize(const at::Tensor& v) {
  auto stats = at::native_layer_norm(v, {v.size(-1)}, std::nullopt, std::nullopt, kLayerNormEps);
  return {std::get<0>(stats), std::get<2>(stats).view({v.size(0), 1})};
}

// Backward of x̂ = normalize(v): dv from dx̂ (the upstream gradient times γ), x̂ and rstd.
at::Tensor normalize_backward(const at::Tensor& dxhat, const at::Tensor& xhat, const at::Tensor& rstd) {
  return rstd * (dxhat - dxhat.mean(-1, true) - xhat * (dxhat * xhat).mean(-1, true));
}

// Column offsets of one step's `saved` row [W] (the layout of rnnfused/_layer_norm_ops.py).
template <typename Cell>
struct SavedLayout {
  int64_t H;
  int64_t activations() const { return 0; }                                  // 4H: σi σf tanh g σo | r z n b_n
  int64_t xhat_c() const { return Cell::kSaved * H; }                        // H (LSTM): x̂(c̃)
  int64_t xhat_hh() const { return (Cell::kSaved + (Cell::kHasCellState ? 1 : 0)) * H; }  // G·H: x̂(h W_hhᵀ)
  int64_t rstd() const { return xhat_hh() + Cell::kGates * H; }              // rstd_hh [, rstd_c]
  int64_t width() const { return rstd() + (Cell::kHasCellState ? 2 : 1); }
};

struct LnForward {
  at::Tensor output, h_n, c_n, saved, cells;
};

template <typename Cell>
LnForward ln_forward(const LnArgs& a, const at::Tensor& xg_storage, bool train) {
  const LayerArgs& q = a.seq;
  const int64_t T = q.T, B = q.B, H = q.H;
  const SavedLayout<Cell> L{H};
  const auto copts = xg_storage.options().dtype(a.compute);
  const at::Tensor xg = xg_storage.to(a.compute);  // [T, B, G*H]
  LnForward r;
  r.output = at::empty({T, B, H}, xg_storage.options());
  r.saved = train ? at::empty({T, B, L.width()}, copts) : at::empty({0}, copts);               // [T, B, W]
  r.cells = Cell::kHasCellState && train ? at::empty({T, B, H}, copts) : at::empty({0}, copts);  // [T, B, H]
  const at::Tensor starts = reset_starts(q);                                        // [T, B] bool or undefined
  const at::Tensor valid = q.lengths.defined() ? valid_steps(q) : at::Tensor();     // [T, B] bool or undefined
  at::Tensor h = a.h0, c = a.c0;                                                     // [B, H] running state
  const at::Tensor w_hh_t = a.w_hh.t();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = time_of_step(q, s);
    if (starts.defined() && s > 0) {  // a new segment starts from the initial state
      const at::Tensor fresh = starts.select(0, t).unsqueeze(1);  // [B, 1]
      h = at::where(fresh, a.h0, h);
      if (Cell::kHasCellState) c = at::where(fresh, a.c0, c);
    }
    auto [xhat_hh, rstd_hh] = normalize(at::mm(h, w_hh_t));  // [B, G*H], [B, 1]
    const at::Tensor x_t = xg.select(0, t);                   // [B, G*H]
    at::Tensor h_new, c_new, activations, xhat_c, rstd_c;
    if constexpr (Cell::kHasCellState) {
      const auto pre = (x_t + a.g_hh * xhat_hh).chunk(4, 1);
      const at::Tensor i = pre[0].sigmoid(), f = pre[1].sigmoid(), g = pre[2].tanh(), o = pre[3].sigmoid();
      c_new = f * c + i * g;
      std::tie(xhat_c, rstd_c) = normalize(c_new);
      h_new = o * at::tanh(a.g_c * xhat_c + a.b_c);
      activations = at::cat({i, f, g, o}, 1);
    } else {
      at::Tensor b = a.g_hh * xhat_hh;
      if (a.b_hh.defined()) b = b + a.b_hh;
      const auto xs = x_t.chunk(3, 1), bs = b.chunk(3, 1);
      const at::Tensor r_ = (xs[0] + bs[0]).sigmoid(), z = (xs[1] + bs[1]).sigmoid();
      const at::Tensor n = (xs[2] + r_ * bs[2]).tanh();
      h_new = (1 - z) * n + z * h;
      activations = at::cat({r_, z, n, bs[2]}, 1);
    }
    if (q.zoneout.defined()) {  // state = candidate + m·(entering − candidate)
      const at::Tensor keep = q.zoneout.select(1, t);  // [S, B, H]
      h_new = h_new + keep.select(0, 0) * (h - h_new);
      if (Cell::kHasCellState) c_new = c_new + keep.select(0, 1) * (c - c_new);
    }
    at::Tensor out_t = h_new;
    if (valid.defined()) {  // padded steps keep the state and give zero output
      const at::Tensor active = valid.select(0, t).unsqueeze(1);  // [B, 1]
      h_new = at::where(active, h_new, h);
      if (Cell::kHasCellState) c_new = at::where(active, c_new, c);
      out_t = at::where(active, h_new, at::zeros({}, h_new.options()));
    }
    r.output.select(0, t).copy_(out_t);
    if (train) {
      at::Tensor row = r.saved.select(0, t);  // [B, W]
      row.narrow(1, L.activations(), Cell::kSaved * H).copy_(activations);
      row.narrow(1, L.xhat_hh(), Cell::kGates * H).copy_(xhat_hh);
      row.narrow(1, L.rstd(), 1).copy_(rstd_hh);
      if (Cell::kHasCellState) {
        row.narrow(1, L.xhat_c(), H).copy_(xhat_c);
        row.narrow(1, L.rstd() + 1, 1).copy_(rstd_c);
        r.cells.select(0, t).copy_(c_new);
      }
    }
    h = h_new;
    c = c_new;
  }
  r.h_n = h.to(a.storage);
  if (Cell::kHasCellState) r.c_n = c.to(a.storage);
  return r;
}

struct LnBackward {
  at::Tensor grad_xg, grad_h0, grad_c0, grad_w_hh, grad_b_hh, grad_g_hh, grad_g_c, grad_b_c;
};

template <typename Cell>
LnBackward ln_backward(const LnArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                       const at::Tensor& grad_c_n, const at::Tensor& output, const at::Tensor& saved,
                       const at::Tensor& cells) {
  const LayerArgs& q = a.seq;
  const int64_t T = q.T, B = q.B, H = q.H, GH = Cell::kGates * H;
  const SavedLayout<Cell> L{H};
  const auto copts = output.options().dtype(a.compute);
  const at::Tensor grad_out = masked_grad_output(q, grad_output).to(a.compute);                  // [T, B, H]
  const at::Tensor h_prev = previous_states(q, output.to(a.compute), a.h0);                     // [T, B, H]
  const at::Tensor c_prev = Cell::kHasCellState ? previous_states(q, cells, a.c0) : at::Tensor();  // [T, B, H]
  const at::Tensor starts = reset_starts(q);                                                     // [T, B] bool
  const at::Tensor valid = q.lengths.defined() ? valid_steps(q) : at::Tensor();                  // [T, B] bool

  at::Tensor grad_xg = at::empty({T, B, GH}, copts);                                      // [T, B, G*H]
  at::Tensor grad_ln_hh = Cell::kSplitRecurrentGrad ? at::empty({T, B, GH}, copts) : grad_xg;  // dL/d LN_hh output
  at::Tensor grad_hw = at::empty({T, B, GH}, copts);                                      // dL/d(h W_hhᵀ)
  at::Tensor grad_ln_c = Cell::kHasCellState ? at::empty({T, B, H}, copts) : at::Tensor();  // dL/d LN_c output
  at::Tensor dh = grad_h_n.to(a.compute), dc = Cell::kHasCellState ? grad_c_n.to(a.compute) : at::Tensor();  // [B, H]
  at::Tensor dh_to_h0 = starts.defined() ? at::zeros_like(dh) : at::Tensor();
  at::Tensor dc_to_c0 = starts.defined() && Cell::kHasCellState ? at::zeros_like(dc) : at::Tensor();
  const at::Tensor zero = at::zeros({}, copts);

  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = time_of_step(q, s);
    const at::Tensor row = saved.select(0, t);  // [B, W]
    const at::Tensor xhat_hh = row.narrow(1, L.xhat_hh(), GH), rstd_hh = row.narrow(1, L.rstd(), 1);
    const at::Tensor active = valid.defined() ? valid.select(0, t).unsqueeze(1) : at::Tensor();  // [B, 1]
    const auto masked = [&](const at::Tensor& v) { return active.defined() ? at::where(active, v, zero) : v; };
    const at::Tensor dh_t = dh + grad_out.select(0, t);  // dL/dh_t (zoned out)
    at::Tensor dh_cand = dh_t, dc_cand, kept_h, kept_c;
    const at::Tensor keep = q.zoneout.defined() ? q.zoneout.select(1, t) : at::Tensor();  // [S, B, H]
    if (keep.defined()) {
      kept_h = keep.select(0, 0) * dh_t;
      dh_cand = dh_t - kept_h;
    }
    at::Tensor dgates, dln_hh, dh_direct;  // [B, G*H] dL/dxg_t, dL/d LN_hh output; [B, H]
    at::Tensor dc_out;                     // [B, H] dL/dc_{t-1}
    if constexpr (Cell::kHasCellState) {
      dc_cand = dc;
      if (keep.defined()) {
        kept_c = keep.select(0, 1) * dc;
        dc_cand = dc - kept_c;
      }
      const auto act = row.narrow(1, 0, 4 * H).chunk(4, 1);
      const at::Tensor &i = act[0], &f = act[1], &g = act[2], &o = act[3];
      const at::Tensor xhat_c = row.narrow(1, L.xhat_c(), H), rstd_c = row.narrow(1, L.rstd() + 1, 1);
      const at::Tensor tc = at::tanh(a.g_c * xhat_c + a.b_c);
      const at::Tensor d_ln_c = dh_cand * o * (1 - tc * tc);
      grad_ln_c.select(0, t).copy_(masked(d_ln_c));
      dc_cand = dc_cand + normalize_backward(d_ln_c * a.g_c, xhat_c, rstd_c);
      const at::Tensor cp = c_prev.select(0, t);
      dgates = masked(at::cat({dc_cand * g * i * (1 - i), dc_cand * cp * f * (1 - f), dc_cand * i * (1 - g * g),
                               dh_cand * tc * o * (1 - o)}, 1));
      dln_hh = dgates;
      dc_out = dc_cand * f;
      if (keep.defined()) dc_out = dc_out + kept_c;
    } else {
      const auto act = row.narrow(1, 0, 4 * H).chunk(4, 1);
      const at::Tensor &r_ = act[0], &z = act[1], &n = act[2], &bn = act[3];
      const at::Tensor dpre_n = dh_cand * (1 - z) * (1 - n * n);
      const at::Tensor dpre_z = dh_cand * (h_prev.select(0, t) - n) * z * (1 - z);
      const at::Tensor dpre_r = dpre_n * bn * r_ * (1 - r_);
      dgates = masked(at::cat({dpre_r, dpre_z, dpre_n}, 1));
      dln_hh = masked(at::cat({dpre_r, dpre_z, dpre_n * r_}, 1));
      dh_direct = dh_cand * z;
    }
    grad_xg.select(0, t).copy_(dgates);
    if (Cell::kSplitRecurrentGrad) grad_ln_hh.select(0, t).copy_(dln_hh);
    const at::Tensor dhw = normalize_backward(dln_hh * a.g_hh, xhat_hh, rstd_hh);  // [B, G*H], zero on padded rows
    grad_hw.select(0, t).copy_(dhw);
    at::Tensor dh_out = at::mm(dhw, a.w_hh);  // dL/dh_{t-1}
    if (dh_direct.defined()) dh_out = dh_out + dh_direct;
    if (kept_h.defined()) dh_out = dh_out + kept_h;
    if (active.defined()) {  // padded steps pass the carries through unchanged
      dh_out = at::where(active, dh_out, dh_t);
      if (Cell::kHasCellState) dc_out = at::where(active, dc_out, dc);
    }
    dh = dh_out;
    if (Cell::kHasCellState) dc = dc_out;
    if (starts.defined() && s > 0) {
      const at::Tensor starts_t = starts.select(0, t).unsqueeze(1);  // [B, 1]
      move_reset_grad(starts_t, dh, dh_to_h0);
      if (Cell::kHasCellState) move_reset_grad(starts_t, dc, dc_to_c0);
    }
  }
  if (starts.defined()) {
    dh = dh + dh_to_h0;
    if (Cell::kHasCellState) dc = dc + dc_to_c0;
  }

  const auto st = a.storage;
  const at::Tensor sv_hh = saved.narrow(2, L.xhat_hh(), GH);  // [T, B, G*H] x̂_hh
  LnBackward g;
  g.grad_xg = grad_xg.to(st);
  g.grad_h0 = dh.to(st);
  g.grad_w_hh = at::mm(grad_hw.view({T * B, GH}).t(), h_prev.view({T * B, H})).to(st);
  g.grad_g_hh = (grad_ln_hh * sv_hh).sum({0, 1}).to(st);
  if (Cell::kSplitRecurrentGrad) g.grad_b_hh = grad_ln_hh.sum({0, 1}).to(st);
  if (Cell::kHasCellState) {
    g.grad_c0 = dc.to(st);
    g.grad_g_c = (grad_ln_c * saved.narrow(2, L.xhat_c(), H)).sum({0, 1}).to(st);
    g.grad_b_c = grad_ln_c.sum({0, 1}).to(st);
  }
  return g;
}

template <typename Cell>
void forward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  constexpr bool c = Cell::kHasCellState;
  const std::string name = op.schema().name();
  const size_t count = op.schema().arguments().size();
  detail::ArgReader in(stack, count);
  const at::Tensor xg = in.tensor(), h0 = in.tensor();
  const at::Tensor c0 = c ? in.tensor() : at::Tensor();
  const at::Tensor w_hh = in.tensor();
  const std::optional<at::Tensor> b_hh = Cell::kSplitRecurrentGrad ? in.optional_tensor() : std::nullopt;
  const at::Tensor g_hh = in.tensor();
  const at::Tensor g_c = c ? in.tensor() : at::Tensor(), b_c = c ? in.tensor() : at::Tensor();
  const std::optional<at::Tensor> lengths = in.optional_tensor();
  const bool reverse = in.boolean(), train = in.boolean();
  const std::optional<at::Tensor> resets = in.optional_tensor(), zoneout = in.optional_tensor();
  torch::jit::drop(*stack, count);

  const LnArgs a = make_args<Cell>(name.c_str(), xg, h0, c0, w_hh, b_hh, g_hh, g_c, b_c, lengths, reverse, resets,
                                   zoneout);
  LnForward r = ln_forward<Cell>(a, xg, train);
  torch::jit::push(*stack, std::move(r.output), std::move(r.h_n));
  if (c) torch::jit::push(*stack, std::move(r.c_n));
  torch::jit::push(*stack, std::move(r.saved));
  if (c) torch::jit::push(*stack, std::move(r.cells));
}

template <typename Cell>
void backward_kernel(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  constexpr bool c = Cell::kHasCellState;
  const std::string name = op.schema().name();
  const char* op_name_ = name.c_str();
  const size_t count = op.schema().arguments().size();
  detail::ArgReader in(stack, count);
  const at::Tensor grad_output = in.tensor(), grad_h_n = in.tensor();
  const at::Tensor grad_c_n = c ? in.tensor() : at::Tensor();
  const at::Tensor h0 = in.tensor();
  const at::Tensor c0 = c ? in.tensor() : at::Tensor();
  const at::Tensor w_hh = in.tensor(), g_hh = in.tensor();
  const at::Tensor g_c = c ? in.tensor() : at::Tensor(), b_c = c ? in.tensor() : at::Tensor();
  const std::optional<at::Tensor> lengths = in.optional_tensor();
  const bool reverse = in.boolean();
  const at::Tensor output = in.tensor(), saved = in.tensor();
  const at::Tensor cells = c ? in.tensor() : at::Tensor();
  const std::optional<at::Tensor> resets = in.optional_tensor(), zoneout = in.optional_tensor();
  torch::jit::drop(*stack, count);

  TORCH_CHECK(output.defined() && output.dim() == 3, op_name_, ": output must be 3-D [seq_len, batch, hidden]");
  const int64_t T = output.size(0), B = output.size(1), H = output.size(2);
  // The op reads the shapes from `output`; xg is not an argument, a [T, B, G*H] view stands in for the checks.
  const at::Tensor xg_shape = at::empty({1, 1, 1}, output.options()).expand({T, B, Cell::kGates * H});
  const LnArgs a = make_args<Cell>(op_name_, xg_shape, h0, c0, w_hh, std::nullopt, g_hh, g_c, b_c, lengths, reverse,
                                   resets, zoneout);
  const auto dt = output.scalar_type();
  TORCH_CHECK(saved.numel() > 0, op_name_, ": saved is empty: the forward ran with train=False (inference), which "
              "keeps nothing for backward");
  const at::Tensor sv = check_saved(op_name_, "saved", saved, {T, B, SavedLayout<Cell>{H}.width()}, a.compute, output);
  const at::Tensor cs = c ? check_saved(op_name_, "cells", cells, {T, B, H}, a.compute, output) : at::Tensor();
  const at::Tensor go = check_saved(op_name_, "grad_output", grad_output, {T, B, H}, dt, output);
  const at::Tensor gh = check_saved(op_name_, "grad_h_n", grad_h_n, {B, H}, dt, output);
  const at::Tensor gc = c ? check_saved(op_name_, "grad_c_n", grad_c_n, {B, H}, dt, output) : at::Tensor();
  LnBackward g = ln_backward<Cell>(a, go, gh, gc, output, sv, cs);
  torch::jit::push(*stack, std::move(g.grad_xg), std::move(g.grad_h0));
  if (c) torch::jit::push(*stack, std::move(g.grad_c0));
  torch::jit::push(*stack, std::move(g.grad_w_hh));
  if (Cell::kSplitRecurrentGrad) torch::jit::push(*stack, std::move(g.grad_b_hh));
  torch::jit::push(*stack, std::move(g.grad_g_hh));
  if (c) torch::jit::push(*stack, std::move(g.grad_g_c), std::move(g.grad_b_c));
}

void register_impls(torch::Library& m) {
#define RNNF_REGISTER_LN(Cell)                                                                                 \
  m.impl(op_name<Cell>(false).c_str(), torch::CppFunction::makeFromBoxedFunction<&forward_kernel<Cell>>()); \
  m.impl(op_name<Cell>(true).c_str(), torch::CppFunction::makeFromBoxedFunction<&backward_kernel<Cell>>());
  RNNF_FOR_EACH_LAYER_NORM_CELL(RNNF_REGISTER_LN)
#undef RNNF_REGISTER_LN
}

}  // namespace
}  // namespace rnnfused

TORCH_LIBRARY_FRAGMENT(rnnfused, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
#define RNNF_DEFINE_LN(Cell)                                           \
  m.def(rnnfused::ln_forward_schema<Cell>().c_str(), tags);              \
  m.def(rnnfused::ln_backward_schema<Cell>().c_str(), tags);
  RNNF_FOR_EACH_LAYER_NORM_CELL(RNNF_DEFINE_LN)
#undef RNNF_DEFINE_LN
}

TORCH_LIBRARY_IMPL(rnnfused, CPU, m) { rnnfused::register_impls(m); }

#ifdef RNNFUSED_WITH_CUDA
TORCH_LIBRARY_IMPL(rnnfused, CUDA, m) { rnnfused::register_impls(m); }  // the same ATen code on CUDA tensors
#endif
