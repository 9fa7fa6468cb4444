// Every op schema of the `rnnfused` namespace, in one place.
//
// One op per cell kind runs one layer-direction over a whole sequence (time-major, [T, B, I]) from initial
// state(s) and returns the output sequence, the final state(s) and what its backward needs; the matching
// `*_backward` op is the BPTT sweep. Backends register implementations per dispatch key (csrc/cpu, csrc/cuda);
// Python (rnnfused/_ops.py) registers the fake (meta) functions and the autograd formulas.
//
// Shapes: T steps, B batch, I input size, H hidden size, G gates (LSTM 4, GRU 3, RNN 1),
//         H_out = proj_size when w_hr is given (LSTM only) else H.
//   lengths: optional int64 CPU tensor [B], values in [1, T]: row b runs steps t < lengths[b] (forward or reverse
//            in time) and its padded steps give zero output and leave its state alone (PackedSequence semantics).
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

// Single-step cells (the Fused*Cell modules; implementations: csrc/cell/cell_ops.h). One step, no sequence:
//   input [B,I], hx [B,H], cx [B,H] (LSTM), weights and biases as above (G*H rows).
// The backward ops take the forward's outputs that they read and an output_mask (input, hx, weights, biases): the
// gradients it leaves out come back as empty [0] tensors (LSTM's grad_cx is always computed).
TORCH_LIBRARY_FRAGMENT(rnnfused, m) {
  const std::vector<at::Tag> tags = {at::Tag::pt2_compliant_tag};
  // -> h' [B,H], c' [B,H], saved [B,4H] (σi, σf, tanh g, σo)
  m.def(
      "lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) "
      "-> (Tensor, Tensor, Tensor)",
      tags);
  // -> grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh   (grad_c None: c' unused)
  m.def(
      "lstm_cell_backward(Tensor grad_h, Tensor? grad_c, Tensor input, Tensor hx, Tensor cx, Tensor w_ih, "
      "Tensor w_hh, Tensor saved, Tensor c, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
      "Tensor)",
      tags);
  // -> h' [B,H], saved [B,4H] (σr, σz, n, W_hn h + b_hn)
  m.def(
      "gru_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> (Tensor, Tensor)",
      tags);
  // -> grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  m.def(
      "gru_cell_backward(Tensor grad_h, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor saved, "
      "bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
      tags);
  // Elman cell -> h' [B,H]; its backward reads h'
  for (const char* kind : {"rnn_tanh", "rnn_relu"}) {
    const std::string forward = std::string(kind) +
        "_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) -> Tensor";
    const std::string backward = std::string(kind) +
        "_cell_backward(Tensor grad_h, Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor h, "
        "bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)";
    m.def(forward.c_str(), tags);
    m.def(backward.c_str(), tags);
  }
}
