// The Python module rnnfused._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp and the backends'
// TORCH_LIBRARY_IMPL blocks); the attributes here say what this build contains.
#include <torch/extension.h>

#include "cpu/python_bindings.h"
#include "sequence/layer_args.h"

#ifdef RNNFUSED_WITH_CUDA
#include "cuda/python_bindings.h"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "rnnfused C++/CUDA ops (registered under torch.ops.rnnfused)";
  rnnfused::cpu::bind_python(m);
  // The ops' lengths check on its own, for tests (meta tensors stand in for a GPU input on a CPU-only machine).
  m.def("_checked_lengths", [](const at::Tensor& lengths, const at::Tensor& input) {
    return rnnfused::checked_lengths("rnnfused::_checked_lengths", lengths, input);
  });
#ifdef RNNFUSED_WITH_CUDA
  m.attr("built_with_cuda") = true;
  rnnfused::cuda::bind_python(m);
#else
  m.attr("built_with_cuda") = false;
#endif
}
