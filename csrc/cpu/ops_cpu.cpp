// The `cpu` backend: the step-wise driver with the C++ pointwise loops, registered for the CPU dispatch key.
#include <torch/library.h>

#include "../sequence/stepwise_ops.h"
#include "pointwise_cpu.h"

namespace rnnfused {
namespace {

struct CpuPointwise {
  template <typename Cell, typename T, typename C>
  static void forward(const ForwardStep<T, C>& s) {
    cpu::forward_step<Cell>(s);
  }
  template <typename Cell, typename T, typename C>
  static void backward(const BackwardStep<T, C>& s) {
    cpu::backward_step<Cell>(s);
  }
};

using Ops = StepwiseOps<CpuPointwise>;

}  // namespace

TORCH_LIBRARY_IMPL(rnnfused, CPU, m) {
  m.impl("lstm", &Ops::lstm);
  m.impl("lstm_backward", &Ops::lstm_backward);
  m.impl("gru", &Ops::gru);
  m.impl("gru_backward", &Ops::gru_backward);
  m.impl("rnn_tanh", &Ops::rnn<RnnTanhCell>);
  m.impl("rnn_tanh_backward", &Ops::rnn_backward<RnnTanhCell>);
  m.impl("rnn_relu", &Ops::rnn<RnnReluCell>);
  m.impl("rnn_relu_backward", &Ops::rnn_backward<RnnReluCell>);
}

}  // namespace rnnfused
