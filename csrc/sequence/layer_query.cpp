#include "layer_query.h"

#include <c10/util/Exception.h>

#include "../common/cells.h"

namespace rnnfused {

at::ScalarType parse_dtype(const char* api, const std::string& dtype) {
  if (dtype == "float64" || dtype == "double") return at::kDouble;
  if (dtype == "float32" || dtype == "float") return at::kFloat;
  if (dtype == "float16" || dtype == "half") return at::kHalf;
  if (dtype == "bfloat16") return at::kBFloat16;
  TORCH_CHECK(false, api, ": dtype must be one of float64, float32, float16, bfloat16, got '", dtype, "'");
}

LayerQuery make_layer_query(const char* api, const std::string& cell, int64_t seq_len, int64_t batch,
                            int64_t input_size, int64_t hidden_size, int64_t proj_size, const std::string& dtype,
                            bool bias, bool lengths, bool reverse, at::Device device) {
  LayerQuery q;
  int64_t G = 0;
  bool has_cell_state = false, has_projection = false;
  visit_cell(cell, [&](auto c) {
    using Cell = decltype(c);
    q.cell = Cell::kName;
    G = Cell::kGates;
    has_cell_state = Cell::kHasCellState;
    has_projection = Cell::kHasProjection;
  });
  TORCH_CHECK(q.cell != nullptr, api, ": cell must be one of ", cell_names(), ", got '", cell, "'");
  TORCH_CHECK(seq_len > 0 && batch > 0 && input_size > 0 && hidden_size > 0 && proj_size >= 0, api,
                    ": sizes must be positive (proj_size >= 0), got seq_len=", seq_len, ", batch=", batch,
                    ", input_size=", input_size, ", hidden_size=", hidden_size, ", proj_size=", proj_size);
  TORCH_CHECK(proj_size == 0 || has_projection, api, ": proj_size is not a feature of cell '", cell, "'");
  const at::ScalarType st = parse_dtype(api, dtype);
  const at::TensorOptions opts = at::TensorOptions().device(device);
  const auto placeholder = [&](at::IntArrayRef sizes, at::ScalarType type) {
    return at::empty({1}, opts.dtype(type)).expand(sizes);
  };
  const int64_t H_out = proj_size > 0 ? proj_size : hidden_size;
  LayerArgs& a = q.args;
  a.G = G;
  a.T = seq_len;
  a.B = batch;
  a.I = input_size;
  a.H = hidden_size;
  a.H_out = H_out;
  a.reverse = reverse;
  a.input = placeholder({seq_len, batch, input_size}, st);
  a.h0 = placeholder({batch, H_out}, st);
  if (has_cell_state) a.c0 = placeholder({batch, hidden_size}, st);
  a.w_ih = placeholder({G * hidden_size, input_size}, st);
  a.w_hh = placeholder({G * hidden_size, H_out}, st);
  if (bias) {
    a.b_ih = placeholder({G * hidden_size}, st);
    a.b_hh = placeholder({G * hidden_size}, st);
  }
  if (proj_size > 0) a.w_hr = placeholder({H_out, hidden_size}, st);
  if (lengths) a.lengths = placeholder({batch}, at::kLong);
  return q;
}

}  // namespace rnnfused
