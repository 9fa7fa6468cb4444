// pack_weights (pack.h) and the debug op that exposes it to the tests:
//   torch.ops.rnnfused._persistent_pack(w_hh, gates, backward, ctas, units, k_padded, seg_stride=0) -> Tensor
// (any device, any dtype: the CPU tests check the packing against the kernel's K-ordering contract).
#include "pack.h"

#include <torch/library.h>

namespace rnnfused {
namespace persistent {

at::Tensor pack_weights(const at::Tensor& w_hh, int64_t gates, const Geometry& geo) {
  const int64_t G = gates, H = w_hh.size(1), C = geo.ctas, U = geo.units, Kp = geo.k_padded;
  const bool fwd = geo.dir == int(Direction::kForward);
  const int64_t segment = fwd ? U : G * U;
  const int64_t Sp = geo.seg_stride > 0 ? geo.seg_stride : segment;  // K entries reserved per CTA
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == G * H && C * U >= H && Kp % geo.chunk_elems == 0 && Sp >= segment,
              "rnnfused persistent: w_hh of shape ", w_hh.sizes(), " does not match the geometry (", describe(geo),
              ")");
  TORCH_CHECK(Kp >= C * Sp, "rnnfused persistent: k_padded ", Kp, " < ctas*seg_stride ", C * Sp);
  const at::Tensor w = w_hh.contiguous().view({G, H, H});                           // (gate, row unit, column unit)
  const at::Tensor padded = at::constant_pad_nd(w, {0, C * U - H, 0, C * U - H});  // [G, C*U, C*U]
  if (fwd) {
    // Columns (K): unit c*U + u → c*Sp + u.
    const at::Tensor k = at::constant_pad_nd(padded.view({G, C * U, C, U}), {0, Sp - U}).reshape({G, C * U, C * Sp});
    const at::Tensor kp = at::constant_pad_nd(k, {0, Kp - C * Sp});                 // [G, C*U, Kp]
    return kp.view({G, C, U, Kp}).permute({1, 0, 2, 3}).contiguous().view({C, G * U, Kp});
  }
  // Rows of W_hhᵀ: (row cta c, row unit u) = column c*U + u of W_hh; K: (cta c', gate g, unit u') → c'*Sp + g*U + u'.
  const at::Tensor k = padded.view({G, C, U, C, U}).permute({3, 4, 1, 0, 2}).reshape({C, U, C, G * U});
  const at::Tensor ks = at::constant_pad_nd(k, {0, Sp - G * U}).reshape({C, U, C * Sp});
  return at::constant_pad_nd(ks, {0, Kp - C * Sp}).contiguous();
}

namespace {

at::Tensor pack_op(const at::Tensor& w_hh, int64_t gates, bool backward, int64_t ctas, int64_t units,
                   int64_t k_padded, int64_t seg_stride) {
  TORCH_CHECK(gates > 0 && ctas > 0 && units > 0 && seg_stride >= 0,
              "rnnfused::_persistent_pack: gates, ctas, units must be positive and seg_stride >= 0");
  Geometry geo;
  geo.dir = int(backward ? Direction::kBackward : Direction::kForward);
  geo.ctas = static_cast<int>(ctas);
  geo.units = static_cast<int>(units);
  geo.seg_stride = static_cast<int>(seg_stride);
  geo.k_padded = static_cast<int>(k_padded);
  geo.chunk_elems = kChunkBytes / static_cast<int>(w_hh.element_size());
  return pack_weights(w_hh, gates, geo);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnfused, m) {
  m.def("_persistent_pack(Tensor w_hh, int gates, bool backward, int ctas, int units, int k_padded, "
        "int seg_stride=0) -> Tensor",
        &pack_op);
}

}  // namespace persistent
}  // namespace rnnfused
