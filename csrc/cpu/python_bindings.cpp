#include "python_bindings.h"

#include <ATen/Parallel.h>

#include <exception>

#include "cpu_path.h"
#include "fused_runner.h"
#include "recycled_buffers.h"
#include "scratch.h"

namespace rnnfused {
namespace cpu {

void bind_python(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("cpu_path", &query_path, "The CPU path (fused / stepwise) a layer-direction of this configuration takes",
        py::arg("cell"), py::arg("seq_len"), py::arg("batch"), py::arg("input_size"), py::arg("hidden_size"),
        py::arg("proj_size") = 0, py::arg("dtype") = "float32", py::arg("bias") = true, py::arg("lengths") = false,
        py::arg("reverse") = false);
  bind_cell_steps(m);
  m.def("cpu_isa", [] { return std::string(isa_name(active_isa())); },
        "The instruction set the fused CPU kernels run with here (avx512, avx2 or portable)");
  // Test hooks (private): force the path or the ISA; return the previous setting.
  m.def("_cpu_force_path", &force_path, py::arg("path"));
  m.def("_cpu_force_isa", &force_isa, py::arg("isa"));
  m.def("_cpu_force_workers", &force_workers, py::arg("workers"));
  m.def("_cpu_release_recycled", &release_recycled,
        "Frees the recycled blocks of the cell steps' buffers now in the free lists (csrc/cpu/recycled_buffers.h); "
        "returns the bytes");
  m.def("_cpu_recycled_stats", [] {
    const RecycledStats s = recycled_stats();
    return py::dict(py::arg("hits") = s.hits, py::arg("misses") = s.misses, py::arg("cached_bytes") = s.cached_bytes);
  });
  m.def("_cpu_set_recycling", &set_recycling, py::arg("enabled"));
  m.def("_cpu_release_scratch", &release_scratch,
        "Frees this thread's reused scratch buffers of the fused CPU path (csrc/cpu/scratch.h); returns the bytes");
  // The fused path's GEMM of its big products (tests and benchmarks): a · b, or aᵀ · b.
  m.def("_cpu_matmul", &fused_matmul, py::arg("a"), py::arg("a_transposed"), py::arg("b"));
  m.def("_cpu_matmul_into", &fused_matmul_into, py::arg("a"), py::arg("a_transposed"), py::arg("b"), py::arg("out"),
        py::arg("accumulate"));
  // Calls fn on this thread from inside an at::parallel_for region (the other chunk idles): how a test sees that
  // the fused path runs inline there instead of starting a second team.
  m.def("_run_in_parallel_region", [](const py::function& fn) {
    std::exception_ptr error;
    at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t /*end*/) {
      if (begin != 0) return;  // chunk 0 runs on the calling thread (OpenMP's master), which holds the GIL
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
    });
    if (error) std::rethrow_exception(error);
  });
}

}  // namespace cpu
}  // namespace rnnfused
