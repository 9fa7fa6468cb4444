// The `cpu` backend: the step-wise driver with the C++ pointwise loops, registered for the CPU dispatch key.
#include "../sequence/layer_ops.h"
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

}  // namespace

TORCH_LIBRARY_IMPL(rnnfused, CPU, m) { register_layer_ops<StepwiseRunner<CpuPointwise>>(m); }

}  // namespace rnnfused
