#include "driver.h"

namespace rnnfused {

at::Tensor previous_states(const LayerArgs& a, const at::Tensor& seq, const at::Tensor& init) {
  const int64_t T = seq.size(0);
  at::Tensor prev = at::empty_like(seq, at::MemoryFormat::Contiguous);  // [T, B, X]
  if (!a.reverse) {
    prev.select(0, 0).copy_(init);
    if (T > 1) prev.narrow(0, 1, T - 1).copy_(seq.narrow(0, 0, T - 1));
  } else {
    prev.select(0, T - 1).copy_(init);
    if (T > 1) prev.narrow(0, 0, T - 1).copy_(seq.narrow(0, 1, T - 1));
  }
  at::Tensor from_init;  // [T, B] bool: steps that start from init besides the first
  if (a.reverse && a.lengths.defined()) {
    // Row b's first step in reverse time is t = lengths[b] - 1.
    from_init = at::arange(T, a.lengths.options()).unsqueeze(1) == (a.lengths - 1).unsqueeze(0);
  } else if (a.resets.defined()) {
    from_init = reset_starts(a);
  }
  return from_init.defined() ? at::where(from_init.unsqueeze(2), init.unsqueeze(0), prev) : prev;
}

at::Tensor reset_starts(const LayerArgs& a) {
  if (!a.resets.defined()) return at::Tensor();
  at::Tensor starts = at::zeros_like(a.resets);  // [T, B]
  if (a.T > 1) {
    // forward: step t starts a segment when resets[t] (t > 0); reverse: when resets[t + 1] (t < T - 1)
    starts.narrow(0, a.reverse ? 0 : 1, a.T - 1).copy_(a.resets.narrow(0, 1, a.T - 1));
  }
  return starts;
}

}  // namespace rnnfused
