// rnnfused._C's functions of the cpu backend: the path and ISA queries, and the test hooks that force them.
#pragma once

#include <torch/extension.h>

namespace rnnfused {
namespace cpu {

void bind_python(pybind11::module_& m);

}  // namespace cpu
}  // namespace rnnfused
