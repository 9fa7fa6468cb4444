// CUDA-graph replay of whole layer-direction runs (input GEMM, the T-step loop, and the GEMMs after it), cached
// per configuration, so each of the 2T per-step launches costs a graph node (~1 µs on the H100) instead of a stream
// launch (~5 µs).
//
// Switch: RNNFUSED_CUDA_GRAPHS=1 turns it on (read at every call). Default OFF: the gain was not measured yet (the
// work was written on a machine without a GPU), and a cached graph keeps its own copy of the run's inputs, outputs
// and temporaries alive (up to kMaxGraphs configurations; rnnfused.clear_cuda_graphs() frees them).
//
// How a call goes: the first call of a configuration runs the plain loop; the second warms up on a side stream,
// captures the run with static input buffers, and replays; later calls copy their inputs into the static buffers,
// replay on the current stream and return clones of the static outputs. A configuration is the tag (op, cell,
// direction) plus device, dtypes, sizes, which inputs are present, and the cuBLAS math settings. Values such as
// `lengths` are inputs, not part of the key. While the current stream is itself being captured (the caller runs
// under torch.cuda.graph), the plain loop runs, so it becomes part of the caller's graph.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace rnnfused {
namespace cuda {
namespace graphs {

using Tensors = std::vector<at::Tensor>;  // undefined entries stand for absent optional tensors
using Body = std::function<Tensors(const Tensors& inputs)>;

constexpr const char* kEnvVar = "RNNFUSED_CUDA_GRAPHS";
constexpr size_t kMaxGraphs = 8;      // captured configurations kept
constexpr size_t kMaxEntries = 256;   // configurations counted (seen once, not captured)

// The switch is on and the current CUDA stream is not capturing.
bool enabled();

// body(inputs) through the cache; std::nullopt when this call should run plainly (first sight of a configuration,
// or the cache is full). Inputs must be contiguous CUDA tensors on the current device (or undefined).
std::optional<Tensors> run(const std::vector<int64_t>& tag, const Tensors& inputs, const Body& body);

struct Stats {
  int64_t captures = 0;  // graphs captured so far
  int64_t replays = 0;   // calls served by a replay
  int64_t cached = 0;    // graphs held now
};
Stats stats();

// Waits for the cached graphs' last replays and frees them (and their memory pools).
void clear();

}  // namespace graphs
}  // namespace cuda
}  // namespace rnnfused
