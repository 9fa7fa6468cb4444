// The Python module rnnfused._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp and the backends'
// TORCH_LIBRARY_IMPL blocks); the attributes here say what this build contains.
#include <torch/extension.h>

PYBIND11_MODULE(_C, m) {
  m.doc() = "rnnfused C++/CUDA ops (registered under torch.ops.rnnfused)";
#ifdef RNNFUSED_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
}
