#include "python_bindings.h"

#include "dispatch.h"
#include "graph_cache.h"

namespace rnnfused {
namespace cuda {

void bind_python(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("cuda_path", &query_path, "The CUDA path (stepwise / persistent) a layer-direction of this configuration takes",
        py::arg("cell"), py::arg("seq_len"), py::arg("batch"), py::arg("input_size"), py::arg("hidden_size"),
        py::arg("proj_size") = 0, py::arg("dtype") = "float32", py::arg("bias") = true, py::arg("lengths") = false,
        py::arg("reverse") = false, py::arg("device") = -1);
  m.def("cuda_graph_stats", [] {
    const graphs::Stats s = graphs::stats();
    py::dict d;
    d["captures"] = s.captures;
    d["replays"] = s.replays;
    d["cached"] = s.cached;
    return d;
  });
  m.def("clear_cuda_graphs", &graphs::clear, "Frees the cached CUDA graphs (waits for their last replays)");
}

}  // namespace cuda
}  // namespace rnnfused
