// Python functions of rnnfused._C that only a CUDA build has (added to the module in csrc/module.cpp).
#pragma once

#include <torch/extension.h>

namespace rnnfused {
namespace cuda {

// cuda_path(...)         which CUDA path a layer configuration takes (dispatch.h)
// cuda_graph_stats()     {"captures", "replays", "cached"} of the CUDA-graph cache (graph_cache.h)
// clear_cuda_graphs()    frees the cached graphs
void bind_python(pybind11::module_& m);

}  // namespace cuda
}  // namespace rnnfused
