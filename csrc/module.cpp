// The Python module rnnfused._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp and the backends'
// TORCH_LIBRARY_IMPL blocks); the attributes here say what this build contains.
#include <torch/extension.h>

#include <string>
#include <vector>

#ifdef RNNFUSED_WITH_CUDA
#include "cuda/python_bindings.h"

// RNNFUSED_CUDA_ARCHES (set by setup.py): the code targets of the CUDA kernels, e.g. sm_80,sm_90,compute_90.
#define RNNF_STRINGIFY(...) #__VA_ARGS__
#define RNNF_STRING(...) RNNF_STRINGIFY(__VA_ARGS__)

namespace {
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t end = s.find(',', at);
    out.push_back(s.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}
}  // namespace
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "rnnfused C++/CUDA ops (registered under torch.ops.rnnfused)";
#ifdef RNNFUSED_WITH_CUDA
  m.attr("built_with_cuda") = true;
#ifdef RNNFUSED_CUDA_ARCHES
  m.attr("cuda_arches") = pybind11::tuple(pybind11::cast(split_commas(RNNF_STRING(RNNFUSED_CUDA_ARCHES))));
#else
  m.attr("cuda_arches") = pybind11::tuple();
#endif
  rnnfused::cuda::bind_python(m);
#else
  m.attr("built_with_cuda") = false;
  m.attr("cuda_arches") = pybind11::tuple();
#endif
}
