// Every op schema of the `rnnfused` namespace, in one place.
//
// One op per cell kind runs one layer-direction over a whole sequence (time-major, [T, B, I]) from initial
// state(s) and returns the output sequence, the final state(s) and what its backward needs; the matching
// `*_backward` op is the BPTT sweep. Backends register implementations per dispatch key (csrc/cpu, csrc/cuda);
// Python (rnnfused/_ops.py) registers the fake (meta) functions and the autograd formulas.
//
// Shapes: T steps, B batch, I input size, H hidden size, G gates (LSTM 4, GRU 3, RNN 1),
//         H_out = proj_size when w_hr is given (LSTM only) else H.
//   lengths: optional int64 tensor [B], values in [1, T]: row b runs steps t < lengths[b] (forward or reverse
//            in time) and its padded steps give zero output and leave its state alone (PackedSequence semantics).
//            On the CPU (values checked, copied to the device) or already on input's device (not value-checked:
//            no GPU sync, capturable in a CUDA graph; see checked_lengths in sequence/layer_args.h).
//   reverse: run the sequence from t = T-1 down to 0 (the backward direction of a bidirectional layer).
#include <torch/library.h>

TORCH_LIBRARY(rnnfused, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  // -> output [T,B,H_out], h_n [B,H_out], c_n [B,H], saved [T,B,4H] (σi,σf,tanh g,σo), cells [T,B,H] (c_t, float32
  //    for 16-bit dtypes)
  m.def(
      "lstm(Tensor input, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? w_hr, Tensor? lengths, bool reverse) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
      tags);
  // -> grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr ([0] without w_hr)
  m.def(
      "lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor input, Tensor h0, Tensor c0, "
      "Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor? lengths, bool reverse, Tensor output, Tensor saved, "
      "Tensor cells) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      tags);
  // -> output [T,B,H], h_n [B,H], saved [T,B,4H] (σr, σz, n, W_hn h + b_hn)
  m.def(
      "gru(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
      "bool reverse) -> (Tensor, Tensor, Tensor)",
      tags);
  // -> grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  m.def(
      "gru_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? lengths, bool reverse, Tensor output, Tensor saved) -> (Tensor, Tensor, Tensor, Tensor, Tensor, "
      "Tensor)",
      tags);
  // Elman RNN, h' = tanh(...) or relu(...) -> output [T,B,H], h_n [B,H]
  for (const char* kind : {"rnn_tanh", "rnn_relu"}) {
    const std::string forward = std::string(kind) +
        "(Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
        "bool reverse) -> (Tensor, Tensor)";
    const std::string backward = std::string(kind) +
        "_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor h0, Tensor w_ih, Tensor w_hh, "
        "Tensor? lengths, bool reverse, Tensor output) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)";
    m.def(forward.c_str(), tags);
    m.def(backward.c_str(), tags);
  }
}
