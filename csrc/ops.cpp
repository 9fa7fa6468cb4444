// Every op schema of the `rnnfused` namespace, in one place: a forward and a backward op per cell of the registry
// (csrc/common/cells.h), with schemas derived from the cell's traits (csrc/sequence/op_schemas.h).
//
// A forward op runs one layer-direction over a whole sequence (time-major, [T, B, I]) from initial state(s) and
// returns the output sequence, the final state(s) and what its backward needs; the matching `*_backward` op is the
// BPTT sweep. Backends register implementations per dispatch key (csrc/cpu, csrc/cuda); Python (rnnfused/_fakes.py,
// rnnfused/_autograd.py) registers the fake (meta) functions and the autograd formulas.
//
//   lstm(input, h0, c0, w_ih, w_hh, b_ih?, b_hh?, w_hr?, lengths?, reverse)
//       -> output [T,B,H_out], h_n [B,H_out], c_n [B,H], saved [T,B,4H] (σi,σf,tanh g,σo), cells [T,B,H] (c_t)
//   gru(input, h0, w_ih, w_hh, b_ih?, b_hh?, lengths?, reverse) -> output, h_n, saved [T,B,4H] (σr,σz,n,W_hn h+b_hn)
//   rnn_tanh / rnn_relu(input, h0, w_ih, w_hh, b_ih?, b_hh?, lengths?, reverse) -> output, h_n
//   <cell>_backward(grad_output, grad_h_n, [grad_c_n], input, h0, [c0], w_ih, w_hh, [w_hr?], lengths?, reverse,
//                   output, [saved], [cells]) -> grad_input, grad_h0, [grad_c0], grad_w_ih, grad_w_hh, grad_b_ih,
//                                                grad_b_hh, [grad_w_hr ([0] without w_hr)]
//
// Shapes: T steps, B batch, I input size, H hidden size, G gates (LSTM 4, GRU 3, RNN 1),
//         H_out = proj_size when w_hr is given (LSTM only) else H. cells is float32 for 16-bit dtypes.
//   lengths: optional int64 tensor [B], values in [1, T]: row b runs steps t < lengths[b] (forward or reverse
//            in time) and its padded steps give zero output and leave its state alone (PackedSequence semantics).
//            On the CPU (values checked, copied to the device) or already on input's device (not value-checked:
//            no GPU sync, capturable in a CUDA graph; see checked_lengths in sequence/layer_args.h).
//   reverse: run the sequence from t = T-1 down to 0 (the backward direction of a bidirectional layer).
#include <torch/library.h>

#include "sequence/op_schemas.h"

TORCH_LIBRARY(rnnfused, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  rnnfused::for_each_cell([&](auto cell) {
    using Cell = decltype(cell);
    m.def(rnnfused::forward_schema<Cell>().c_str(), tags);
    m.def(rnnfused::backward_schema<Cell>().c_str(), tags);
  });
}
