#include "graph_cache.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace rnnfused {
namespace cuda {
namespace graphs {
namespace {

// A CUDA event without timing, created on its first record (raw runtime API: only c10 headers are needed here).
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  void record(cudaStream_t stream) {
    if (event_ == nullptr) C10_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    C10_CUDA_CHECK(cudaEventRecord(event_, stream));
  }
  // Makes `stream` wait for the last record (nothing to wait for before the first).
  void block(cudaStream_t stream) const {
    if (event_ != nullptr) C10_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
  }
  void synchronize() const {
    if (event_ != nullptr) C10_CUDA_CHECK(cudaEventSynchronize(event_));
  }

 private:
  cudaEvent_t event_ = nullptr;
};

struct Entry {
  int64_t calls = 0;
  bool capture_failed = false;  // then this configuration always runs plainly
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  Tensors static_inputs;   // the graph reads these: each call copies its inputs here
  Tensors static_outputs;  // the graph writes these: each call returns clones
  Event released;  // recorded after the last call's copies in/out; the next call waits for it
};

struct Cache {
  std::mutex mutex;
  std::map<std::vector<int64_t>, std::unique_ptr<Entry>> entries;
  size_t graphs = 0;
  int64_t captures = 0;
  int64_t replays = 0;
};

// Never destroyed: graphs must not be torn down after the CUDA runtime at process exit.
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

std::vector<int64_t> make_key(const std::vector<int64_t>& tag, const Tensors& inputs) {
  const auto& ctx = at::globalContext();
  std::vector<int64_t> key = tag;
  key.push_back(c10::cuda::current_device());
  // The cuBLAS math settings a captured GEMM baked in.
  key.push_back(ctx.allowTF32CuBLAS());
  key.push_back(static_cast<int64_t>(ctx.allowFP16ReductionCuBLAS()));
  key.push_back(static_cast<int64_t>(ctx.allowBF16ReductionCuBLAS()));
  for (const at::Tensor& t : inputs) {
    key.push_back(t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1);
    if (!t.defined()) continue;
    key.push_back(t.dim());
    for (int64_t s : t.sizes()) key.push_back(s);
  }
  return key;
}

void capture(Entry& e, const Tensors& inputs, const Body& body) {
  for (const at::Tensor& t : inputs) {
    e.static_inputs.push_back(t.defined() ? at::empty(t.sizes(), t.options()) : at::Tensor());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) e.static_inputs[i].copy_(inputs[i]);
  }
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
  // Graphs are captured on a side stream (never the legacy default stream).
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, current.device_index());
  Event ready;
  ready.record(current);
  ready.block(side);
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  {
    const c10::cuda::CUDAStreamGuard on_side(side);
    // Warm-up outside the capture on the capture stream: lazy initialisation (cuBLAS workspace of this stream,
    // module loading) must not happen while capturing.
    body(e.static_inputs);
    graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      e.static_outputs = body(e.static_inputs);
    } catch (...) {
      try {
        graph->capture_end();
      } catch (...) {
      }
      e.static_inputs.clear();
      e.static_outputs.clear();
      throw;
    }
    graph->capture_end();
  }
  Event captured;
  captured.record(side);
  captured.block(current);
  e.graph = std::move(graph);
}

}  // namespace

bool enabled() {
  const char* env = std::getenv(kEnvVar);
  if (env == nullptr || std::strcmp(env, "1") != 0) return false;
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
}

std::optional<Tensors> run(const std::vector<int64_t>& tag, const Tensors& inputs, const Body& body) {
  const std::vector<int64_t> key = make_key(tag, inputs);
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.entries.find(key);
  if (it == c.entries.end()) {
    if (c.entries.size() >= kMaxEntries) return std::nullopt;
    it = c.entries.emplace(key, std::make_unique<Entry>()).first;
  }
  Entry& e = *it->second;
  if (!e.graph) {
    if (e.capture_failed || ++e.calls < 2 || c.graphs >= kMaxGraphs) return std::nullopt;
    try {
      capture(e, inputs, body);
    } catch (const std::exception& err) {
      // The failed capture's CUDA error (e.g. an operation not permitted while capturing) must not surface in the
      // caller's next, unrelated check: take it out of the runtime's last-error slot.
      (void)cudaGetLastError();
      e.capture_failed = true;
      TORCH_WARN("rnnfused: capturing a CUDA graph failed, this configuration runs without one: ", err.what());
      return std::nullopt;
    }
    ++c.graphs;
    ++c.captures;
  }

  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream();
  // A previous call (maybe on another stream) must be done with the static buffers before they are overwritten.
  e.released.block(stream);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) e.static_inputs[i].copy_(inputs[i], /*non_blocking=*/true);
  }
  e.graph->replay();
  Tensors outputs;
  outputs.reserve(e.static_outputs.size());
  for (const at::Tensor& t : e.static_outputs) outputs.push_back(t.defined() ? t.clone() : at::Tensor());
  e.released.record(stream);
  ++c.replays;
  return outputs;
}

Stats stats() {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  Stats s;
  s.captures = c.captures;
  s.replays = c.replays;
  s.cached = static_cast<int64_t>(c.graphs);
  return s;
}

void clear() {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& kv : c.entries) kv.second->released.synchronize();
  c.entries.clear();
  c.graphs = 0;
}

}  // namespace graphs
}  // namespace cuda
}  // namespace rnnfused
