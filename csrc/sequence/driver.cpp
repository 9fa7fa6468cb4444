#include "driver.h"

namespace rnnfused {

at::Tensor previous_states(const LayerArgs& a, const at::Tensor& seq, const at::Tensor& init) {
  const int64_t T = seq.size(0);
  at::Tensor prev = at::empty_like(seq, at::MemoryFormat::Contiguous);  // [T, B, X]
  if (!a.reverse) {
    prev.select(0, 0).copy_(init);
    if (T > 1) prev.narrow(0, 1, T - 1).copy_(seq.narrow(0, 0, T - 1));
    return prev;
  }
  prev.select(0, T - 1).copy_(init);
  if (T > 1) prev.narrow(0, 0, T - 1).copy_(seq.narrow(0, 1, T - 1));
  if (!a.lengths.defined()) return prev;
  // [T, B] true at each row's first step in reverse time (t = lengths[b] - 1).
  const at::Tensor first = at::arange(T, a.lengths.options()).unsqueeze(1) == (a.lengths - 1).unsqueeze(0);
  return at::where(first.unsqueeze(2), init.unsqueeze(0), prev);
}

}  // namespace rnnfused
