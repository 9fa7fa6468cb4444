// rnnfused._C's functions of the cpu backend: the path and ISA queries, the test hooks that force them, and the eager
// cell steps.
#pragma once

#include <torch/extension.h>

namespace rnnfused {
namespace cpu {

void bind_python(pybind11::module_& m);

// _cpu_cell_step_<cell>: the eager Fused*Cell step without the dispatcher (csrc/cell/cell_step_eager.h; defined in
// ops_cpu.cpp, next to the pointwise policy it runs).
void bind_cell_steps(pybind11::module_& m);

}  // namespace cpu
}  // namespace rnnfused
