#include "layer_args.h"

#include <c10/util/Exception.h>

namespace rnnfused {
namespace {

void check_tensor(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected,
                  const at::Tensor& input) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a tensor");
  TORCH_CHECK(t.sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == input.scalar_type(), op, ": ", name, " must have dtype ", input.scalar_type(),
              " like input, got ", t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", name, " must be on ", input.device(),
              " like input, got ", t.device());
}

at::Tensor checked_optional(const char* op, const char* name, const std::optional<at::Tensor>& t,
                            at::IntArrayRef expected, const at::Tensor& input) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  check_tensor(op, name, *t, expected, input);
  return t->contiguous();
}

}  // namespace

at::Tensor check_saved(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected,
                       at::ScalarType dtype, const at::Tensor& input) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a tensor");
  TORCH_CHECK(t.sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have dtype ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", name, " must be on ", input.device(), " like input, got ",
              t.device());
  return t.contiguous();
}

at::Tensor checked_lengths(const char* op, const at::Tensor& len, const at::Tensor& input) {
  const int64_t T = input.size(0), B = input.size(1);
  TORCH_CHECK(len.device().is_cpu() || len.device() == input.device(), op,
              ": lengths must be on the CPU (as PackedSequence.batch_sizes) or on ", input.device(),
              " like input, got ", len.device());
  TORCH_CHECK(len.scalar_type() == at::kLong, op, ": lengths must have dtype int64, got ", len.scalar_type());
  TORCH_CHECK(len.dim() == 1 && len.size(0) == B, op, ": lengths must have shape [", B, "], got ", len.sizes());
  if (!len.device().is_cpu()) {
    // Already on the input's device: used as is, values NOT checked (min/max would copy them back and block the
    // CPU, and break CUDA-graph capture). Safe for any values: every kernel only compares t < lengths[b] (the
    // driver's masks, row_active in the pointwise kernels, the persistent kernels' lengths_s[b]) and never indexes
    // memory with a length, so out-of-range values give wrong rows, never out-of-bounds accesses.
    return len.contiguous();
  }
  const int64_t lo = len.min().item<int64_t>();
  const int64_t hi = len.max().item<int64_t>();
  TORCH_CHECK(lo >= 1 && hi <= T, op, ": lengths must lie in [1, seq_len=", T, "], got values in [", lo, ", ", hi,
              "]");
  return len.to(input.device()).contiguous();  // a blocking copy when input is on a GPU
}

LayerArgs make_layer_args(const char* op, int64_t gates, const at::Tensor& input, const at::Tensor& h0,
                          const std::optional<at::Tensor>& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                          const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh,
                          const std::optional<at::Tensor>& w_hr, const std::optional<at::Tensor>& lengths,
                          bool reverse, const std::optional<at::Tensor>& resets,
                          const std::optional<at::Tensor>& zoneout) {
  TORCH_CHECK(input.dim() == 3, op, ": input must be 3-D [seq_len, batch, input_size], got ", input.dim(),
              "-D with shape ", input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": input must have a floating dtype (float64, float32, float16, bfloat16), got ",
              input.scalar_type());
  TORCH_CHECK(input.size(0) > 0, op, ": input must have seq_len > 0, got shape ", input.sizes());
  TORCH_CHECK(input.size(1) > 0, op, ": input must have batch > 0, got shape ", input.sizes());
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) > 0 && w_hh.size(0) % gates == 0 && w_hh.size(1) > 0, op,
              ": w_hh must be 2-D [", gates, "*hidden_size, hidden_size or proj_size], got shape ", w_hh.sizes());

  LayerArgs a;
  a.G = gates;
  a.T = input.size(0);
  a.B = input.size(1);
  a.I = input.size(2);
  a.H = w_hh.size(0) / gates;
  a.H_out = w_hh.size(1);
  a.reverse = reverse;
  const int64_t GH = gates * a.H;

  a.input = input.contiguous();
  check_tensor(op, "w_ih", w_ih, {GH, a.I}, input);
  check_tensor(op, "w_hh", w_hh, {GH, a.H_out}, input);
  a.w_ih = w_ih.contiguous();
  a.w_hh = w_hh.contiguous();
  a.b_ih = checked_optional(op, "b_ih", b_ih, {GH}, input);
  a.b_hh = checked_optional(op, "b_hh", b_hh, {GH}, input);
  TORCH_CHECK(a.b_ih.defined() == a.b_hh.defined(), op, ": b_ih and b_hh must be given together or both be None");
  a.w_hr = checked_optional(op, "w_hr", w_hr, {a.H_out, a.H}, input);
  TORCH_CHECK(a.w_hr.defined() || a.H_out == a.H, op, ": w_hh has ", a.H_out, " columns but hidden_size is ", a.H,
              "; a different width needs w_hr (proj_size)");
  check_tensor(op, "h0", h0, {a.B, a.H_out}, input);
  a.h0 = h0.contiguous();
  if (c0.has_value() && c0->defined()) {
    check_tensor(op, "c0", *c0, {a.B, a.H}, input);
    a.c0 = c0->contiguous();
  }
  if (lengths.has_value() && lengths->defined()) a.lengths = checked_lengths(op, *lengths, input);
  if (resets.has_value() && resets->defined()) {
    const at::Tensor& r = *resets;
    TORCH_CHECK(r.scalar_type() == at::kBool, op, ": resets must have dtype bool, got ", r.scalar_type());
    TORCH_CHECK(r.dim() == 2 && r.size(0) == a.T && r.size(1) == a.B, op, ": resets must have shape [seq_len=", a.T,
                ", batch=", a.B, "], got ", r.sizes());
    TORCH_CHECK(r.device() == input.device(), op, ": resets must be on ", input.device(), " like input, got ",
                r.device());
    TORCH_CHECK(!a.lengths.defined(), op, ": resets cannot be combined with lengths (PackedSequence input): give "
                "one or the other");
    a.resets = r.contiguous();
  }
  if (zoneout.has_value() && zoneout->defined()) {
    const at::Tensor& z = *zoneout;
    // The states zoneout mixes: h (and c for LSTM). Elman RNNs keep no pre-zoneout value for backward; with a
    // projection h and c differ in size.
    TORCH_CHECK(gates == 4 || gates == 3, op, ": zoneout is supported by LSTM and GRU layers only");
    TORCH_CHECK(!a.w_hr.defined(), op, ": zoneout cannot be combined with a projection (w_hr, proj_size)");
    const int64_t S = gates == 4 ? 2 : 1;
    TORCH_CHECK(z.dim() == 4 && z.size(0) == S && z.size(1) == a.T && z.size(2) == a.B && z.size(3) == a.H, op,
                ": zoneout must have shape [", S, ", seq_len=", a.T, ", batch=", a.B, ", hidden_size=", a.H,
                "] (the hidden state's", S == 2 ? " and the cell state's" : "", " keep-masks), got ", z.sizes());
    TORCH_CHECK(z.scalar_type() == cell_dtype(input.scalar_type()), op, ": zoneout must have dtype ",
                cell_dtype(input.scalar_type()), " (the cell dtype of ", input.scalar_type(), " input), got ",
                z.scalar_type());
    TORCH_CHECK(z.device() == input.device(), op, ": zoneout must be on ", input.device(), " like input, got ",
                z.device());
    a.zoneout = z.contiguous();
  }
  return a;
}

}  // namespace rnnfused
