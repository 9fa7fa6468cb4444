// Python functions of rnnfused._C that only a CUDA build has (added to the module in csrc/module.cpp).
#pragma once

#include <torch/extension.h>

namespace rnnfused {
namespace cuda {

// cuda_arches                    the code targets the kernels were built for ("sm_90", "compute_90", ...)
// cuda_path(...)                 (path, why) a layer configuration takes (dispatch.h)
// set_persistent_crossover(t, o)  the dispatch rule's crossover table (crossover.h); persistent_crossover()
// cuda_graph_stats()             {"captures", "replays", "cached"} of the CUDA-graph cache (graph_cache.h)
// clear_cuda_graphs()            frees the cached graphs
// cuda_kernel_image_error(dev)   '' when the build can run on that GPU, else the CUDA error
// persistent_stall()             the watchdog's record of an abandoned persistent launch, or None
void bind_python(pybind11::module_& m);

}  // namespace cuda
}  // namespace rnnfused
