// The Python module rnnfused._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp and the backends'
// TORCH_LIBRARY_IMPL blocks); the attributes here say what this build contains.
#include <torch/extension.h>

#ifdef RNNFUSED_WITH_CUDA
#include "cuda/python_bindings.h"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "rnnfused C++/CUDA ops (registered under torch.ops.rnnfused)";
#ifdef RNNFUSED_WITH_CUDA
  m.attr("built_with_cuda") = true;
  rnnfused::cuda::bind_python(m);
#else
  m.attr("built_with_cuda") = false;
#endif
}
