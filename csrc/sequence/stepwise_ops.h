// The op implementations (the schemas of csrc/ops.cpp): argument checks and result packing around a `Runner`
// that runs one layer-direction. A backend registers them with `m.impl("lstm", &LayerOps<ItsRunner>::lstm)`, or,
// for the plain step-wise driver over a Pointwise policy, `&StepwiseOps<ItsPointwise>::lstm`.
//
// A Runner provides
//   template <typename Cell> static ForwardResult forward(const LayerArgs&);
//   template <typename Cell> static BackwardResult backward(const LayerArgs&, const at::Tensor& grad_output,
//                                                            const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
//                                                            const ForwardResult& saved_forward);
// (the CUDA backend's runner picks a path per call, csrc/cuda/dispatch.h).
#pragma once

#include <torch/library.h>

#include <tuple>

#include "driver.h"

namespace rnnfused {

// The Runner of the step-wise driver (driver.h) over a Pointwise policy.
template <typename Pointwise>
struct StepwiseRunner {
  template <typename Cell>
  static ForwardResult forward(const LayerArgs& a) {
    return sequence_forward<Cell, Pointwise>(a);
  }
  template <typename Cell>
  static BackwardResult backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
    return sequence_backward<Cell, Pointwise>(a, grad_output, grad_h_n, grad_c_n, fwd);
  }
};

template <typename Runner>
struct LayerOps {
  using Tensor = at::Tensor;
  using OptTensor = std::optional<at::Tensor>;
  using Grads6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

  // -> output [T,B,H_out], h_n [B,H_out], c_n [B,H], saved [T,B,4H], cells [T,B,H]
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> lstm(const Tensor& input, const Tensor& h0,
                                                                 const Tensor& c0, const Tensor& w_ih,
                                                                 const Tensor& w_hh, const OptTensor& b_ih,
                                                                 const OptTensor& b_hh, const OptTensor& w_hr,
                                                                 const OptTensor& lengths, bool reverse) {
    const LayerArgs a =
        make_layer_args("rnnfused::lstm", LstmCell::kGates, input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse);
    ForwardResult r = Runner::template forward<LstmCell>(a);
    return {r.output, r.h_n, r.c_n, r.saved, r.cells};
  }

  // -> grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr ([0] without w_hr)
  static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
      const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& grad_c_n, const Tensor& input,
      const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr,
      const OptTensor& lengths, bool reverse, const Tensor& output, const Tensor& saved, const Tensor& cells) {
    constexpr const char* op = "rnnfused::lstm_backward";
    const LayerArgs a = make_layer_args(op, LstmCell::kGates, input, h0, c0, w_ih, w_hh, std::nullopt,
                                        std::nullopt, w_hr, lengths, reverse);
    const ForwardResult f = saved_forward<LstmCell>(op, a, output, saved, cells);
    const Tensor gh = check_saved(op, "grad_h_n", grad_h_n, {a.B, a.H_out}, input.scalar_type(), input);
    const Tensor gc = check_saved(op, "grad_c_n", grad_c_n, {a.B, a.H}, input.scalar_type(), input);
    const Tensor go = check_saved(op, "grad_output", grad_output, {a.T, a.B, a.H_out}, input.scalar_type(), input);
    BackwardResult g = Runner::template backward<LstmCell>(a, go, gh, gc, f);
    if (!g.grad_w_hr.defined()) g.grad_w_hr = at::empty({0}, input.options());
    return {g.grad_input, g.grad_h0, g.grad_c0, g.grad_w_ih, g.grad_w_hh, g.grad_b_ih, g.grad_b_hh, g.grad_w_hr};
  }

  // -> output [T,B,H], h_n [B,H], saved [T,B,4H]
  static std::tuple<Tensor, Tensor, Tensor> gru(const Tensor& input, const Tensor& h0, const Tensor& w_ih,
                                                const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                                const OptTensor& lengths, bool reverse) {
    const LayerArgs a = make_layer_args("rnnfused::gru", GruCell::kGates, input, h0, std::nullopt, w_ih, w_hh, b_ih,
                                        b_hh, std::nullopt, lengths, reverse);
    ForwardResult r = Runner::template forward<GruCell>(a);
    return {r.output, r.h_n, r.saved};
  }

  // -> grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
  static Grads6 gru_backward(const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& input, const Tensor& h0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptTensor& lengths, bool reverse,
                             const Tensor& output, const Tensor& saved) {
    return hidden_only_backward<GruCell>("rnnfused::gru_backward", grad_output, grad_h_n, input, h0, w_ih, w_hh,
                                         lengths, reverse, output, saved);
  }

  // -> output [T,B,H], h_n [B,H]
  template <typename Cell>
  static std::tuple<Tensor, Tensor> rnn(const Tensor& input, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                        const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& lengths,
                                        bool reverse) {
    const LayerArgs a = make_layer_args(rnn_name<Cell>(false), Cell::kGates, input, h0, std::nullopt, w_ih, w_hh,
                                        b_ih, b_hh, std::nullopt, lengths, reverse);
    ForwardResult r = Runner::template forward<Cell>(a);
    return {r.output, r.h_n};
  }

  template <typename Cell>
  static Grads6 rnn_backward(const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& input, const Tensor& h0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptTensor& lengths, bool reverse,
                             const Tensor& output) {
    return hidden_only_backward<Cell>(rnn_name<Cell>(true), grad_output, grad_h_n, input, h0, w_ih, w_hh, lengths,
                                      reverse, output, Tensor());
  }

 private:
  template <typename Cell>
  static const char* rnn_name(bool backward) {
    if (std::is_same<Cell, RnnReluCell>::value) return backward ? "rnnfused::rnn_relu_backward" : "rnnfused::rnn_relu";
    return backward ? "rnnfused::rnn_tanh_backward" : "rnnfused::rnn_tanh";
  }

  // The forward's outputs that backward reads, checked against the shapes the forward produces.
  template <typename Cell>
  static ForwardResult saved_forward(const char* op, const LayerArgs& a, const Tensor& output, const Tensor& saved,
                                     const Tensor& cells) {
    const auto dtype = a.input.scalar_type();
    ForwardResult f;
    f.output = check_saved(op, "output", output, {a.T, a.B, a.H_out}, dtype, a.input);
    f.saved = Cell::kSaved > 0 ? check_saved(op, "saved", saved, {a.T, a.B, Cell::kSaved * a.H}, dtype, a.input)
                               : at::empty({a.T, a.B, 0}, a.input.options());
    if (Cell::kHasCellState) f.cells = check_saved(op, "cells", cells, {a.T, a.B, a.H}, cell_dtype(dtype), a.input);
    return f;
  }

  // Backward of the cells whose only state is h (GRU, Elman RNN).
  template <typename Cell>
  static Grads6 hidden_only_backward(const char* op, const Tensor& grad_output, const Tensor& grad_h_n,
                                     const Tensor& input, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                     const OptTensor& lengths, bool reverse, const Tensor& output,
                                     const Tensor& saved) {
    const LayerArgs a = make_layer_args(op, Cell::kGates, input, h0, std::nullopt, w_ih, w_hh, std::nullopt,
                                        std::nullopt, std::nullopt, lengths, reverse);
    const ForwardResult f = saved_forward<Cell>(op, a, output, saved, Tensor());
    const Tensor gh = check_saved(op, "grad_h_n", grad_h_n, {a.B, a.H_out}, input.scalar_type(), input);
    const Tensor go = check_saved(op, "grad_output", grad_output, {a.T, a.B, a.H_out}, input.scalar_type(), input);
    BackwardResult g = Runner::template backward<Cell>(a, go, gh, Tensor(), f);
    return {g.grad_input, g.grad_h0, g.grad_w_ih, g.grad_w_hh, g.grad_b_ih, g.grad_b_hh};
  }
};

template <typename Pointwise>
using StepwiseOps = LayerOps<StepwiseRunner<Pointwise>>;

// Registers every op of csrc/ops.cpp with the implementations of `Ops` (a LayerOps), inside TORCH_LIBRARY_IMPL.
template <typename Ops>
void register_layer_ops(torch::Library& m) {
  m.impl("lstm", &Ops::lstm);
  m.impl("lstm_backward", &Ops::lstm_backward);
  m.impl("gru", &Ops::gru);
  m.impl("gru_backward", &Ops::gru_backward);
  m.impl("rnn_tanh", &Ops::template rnn<RnnTanhCell>);
  m.impl("rnn_tanh_backward", &Ops::template rnn_backward<RnnTanhCell>);
  m.impl("rnn_relu", &Ops::template rnn<RnnReluCell>);
  m.impl("rnn_relu_backward", &Ops::template rnn_backward<RnnReluCell>);
}

}  // namespace rnnfused
