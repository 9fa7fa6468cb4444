// The `cpu` backend, registered for the CPU dispatch key: per call, the fused path (csrc/cpu/fused_runner.h) or the
// step-wise driver with the C++ pointwise loops, as cpu_path.h's rule says; the single-step cell ops with the same
// pointwise loops.
#include "../cell/cell_ops.h"
#include "../cell/cell_step_eager.h"
#include "../sequence/layer_ops.h"
#include "cpu_path.h"
#include "fused_runner.h"
#include "pointwise_cpu.h"
#include "python_bindings.h"

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

// The Runner (csrc/sequence/layer_ops.h) of the cpu backend.
struct CpuRunner {
  template <typename Cell>
  static ForwardResult forward(const LayerArgs& a) {
    if (cpu::choose_path(a) == cpu::CpuPath::kFused) return cpu::fused_forward<Cell>(a);
    return sequence_forward<Cell, CpuPointwise>(a);
  }
  template <typename Cell>
  static BackwardResult backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
    if (cpu::choose_path(a) == cpu::CpuPath::kFused) {
      return cpu::fused_backward<Cell>(a, grad_output, grad_h_n, grad_c_n, fwd);
    }
    return sequence_backward<Cell, CpuPointwise>(a, grad_output, grad_h_n, grad_c_n, fwd);
  }
};

}  // namespace

namespace cpu {

void bind_cell_steps(pybind11::module_& m) { eager::bind_cell_steps<CpuPointwise>(m, "_cpu_cell_step_"); }

}  // namespace cpu

TORCH_LIBRARY_IMPL(rnnfused, CPU, m) {
  register_layer_ops<CpuRunner>(m);
  register_cell_ops<CpuPointwise>(m);
}

}  // namespace rnnfused
