#include "python_bindings.h"

#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include "dispatch.h"
#include "graph_cache.h"
#include "kernels/pointwise.h"
#include "persistent/persistent.h"

// RNNFUSED_CUDA_ARCHES (set by setup.py): the code targets of the CUDA kernels, e.g. sm_80,sm_90,compute_90.
#define RNNF_STRINGIFY(...) #__VA_ARGS__
#define RNNF_STRING(...) RNNF_STRINGIFY(__VA_ARGS__)

namespace rnnfused {
namespace cuda {
namespace {

pybind11::tuple split_commas(const std::string& s) {
  pybind11::list out;
  size_t at = 0;
  while (at < s.size()) {
    const size_t end = s.find(',', at);
    out.append(s.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return pybind11::tuple(out);
}

}  // namespace

void bind_python(pybind11::module_& m) {
  namespace py = pybind11;
#ifdef RNNFUSED_CUDA_ARCHES
  m.attr("cuda_arches") = split_commas(RNNF_STRING(RNNFUSED_CUDA_ARCHES));
#else
  m.attr("cuda_arches") = py::tuple();
#endif
  m.def("cuda_path", &query_path,
        "(path, why): the CUDA path (stepwise / persistent) a layer-direction of this configuration takes",
        py::arg("cell"), py::arg("seq_len"), py::arg("batch"), py::arg("input_size"), py::arg("hidden_size"),
        py::arg("proj_size") = 0, py::arg("dtype") = "float32", py::arg("bias") = true, py::arg("lengths") = false,
        py::arg("reverse") = false, py::arg("device") = -1);
  m.def("set_persistent_crossover", &set_crossover_table,
        "Replaces the crossover table of the dispatch rule (text in csrc/cuda/crossover.h's format)", py::arg("text"),
        py::arg("origin"));
  m.def("persistent_crossover", &crossover_table_summary, "The crossover table in force, in one line");
  m.def("cuda_graph_stats", [] {
    const graphs::Stats s = graphs::stats();
    py::dict d;
    d["captures"] = s.captures;
    d["replays"] = s.replays;
    d["cached"] = s.cached;
    return d;
  });
  m.def("clear_cuda_graphs", &graphs::clear, "Frees the cached CUDA graphs (waits for their last replays)");
  m.def(
      "cuda_kernel_image_error",
      [](int device) -> std::string {
        const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
        const cudaError_t err = probe_kernel_image();
        return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
      },
      "'' when this build has a kernel image the device can run, else the CUDA error", py::arg("device"));
  m.def(
      "persistent_stall",
      [](bool clear) -> py::object {
        const persistent::StallRecord r = persistent::take_stall(clear);
        if (!r.stalled) return py::none();
        py::dict d;
        d["message"] = persistent::describe_stall(r);
        d["cta"] = r.cta;
        d["warp"] = r.warp;
        d["phase"] = r.phase;
        d["producer"] = r.producer;
        d["seen"] = r.seen;
        d["target"] = r.target;
        d["ctas"] = r.ctas;
        d["phases"] = r.phases;
        d["direction"] = r.dir == 1 ? "backward" : "forward";
        d["variant"] = persistent::stall_variant_name(r.variant);
        d["spins"] = r.spins;
        return d;
      },
      "The watchdog's record of an abandoned persistent launch (a dict), cleared once read unless clear=False; None "
      "when there is none",
      py::arg("clear") = true);
}

}  // namespace cuda
}  // namespace rnnfused
