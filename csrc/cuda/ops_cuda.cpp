// The `cuda` backend: the rnnfused ops for the CUDA dispatch key. Each call asks choose_path() (dispatch.h) how to
// run the layer-direction; the step-wise path is the driver shared with the CPU backend (csrc/sequence/driver.h)
// with the CUDA pointwise kernels, run plainly or replayed from a cached CUDA graph (graph_cache.h).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../sequence/layer_ops.h"
#include "dispatch.h"
#include "persistent/persistent.h"
#include "graph_cache.h"
#include "pointwise_cuda.h"

namespace rnnfused {
namespace cuda {
namespace {

// The tensors of a LayerArgs, in a fixed order, and back (the graph cache copies them into static buffers).
graphs::Tensors layer_tensors(const LayerArgs& a) {
  return {a.input, a.h0, a.c0, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.w_hr, a.lengths, a.resets, a.zoneout};
}
constexpr size_t kLayerTensors = 11;

LayerArgs with_layer_tensors(LayerArgs a, const graphs::Tensors& t) {
  a.input = t[0];
  a.h0 = t[1];
  a.c0 = t[2];
  a.w_ih = t[3];
  a.w_hh = t[4];
  a.b_ih = t[5];
  a.b_hh = t[6];
  a.w_hr = t[7];
  a.lengths = t[8];
  a.resets = t[9];
  a.zoneout = t[10];
  return a;
}

enum : int64_t { kForwardTag = 0, kBackwardTag = 1 };

template <typename Cell>
std::vector<int64_t> graph_tag(int64_t pass, const LayerArgs& a) {
  return {pass, static_cast<int64_t>(cell_index<Cell>()), a.reverse ? 1 : 0, a.train ? 1 : 0};
}

template <typename Cell>
ForwardResult stepwise_forward(const LayerArgs& a) {
  if (graphs::enabled()) {
    const auto outs = graphs::run(graph_tag<Cell>(kForwardTag, a), layer_tensors(a), [&a](const graphs::Tensors& in) {
      const ForwardResult r = sequence_forward<Cell, CudaPointwise>(with_layer_tensors(a, in));
      return graphs::Tensors{r.output, r.h_n, r.c_n, r.saved, r.cells};
    });
    if (outs) return ForwardResult{(*outs)[0], (*outs)[1], (*outs)[2], (*outs)[3], (*outs)[4]};
  }
  return sequence_forward<Cell, CudaPointwise>(a);
}

template <typename Cell>
BackwardResult stepwise_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
  if (graphs::enabled()) {
    graphs::Tensors inputs = layer_tensors(a);
    for (const at::Tensor& t : {grad_output, grad_h_n, grad_c_n, fwd.output, fwd.saved, fwd.cells}) inputs.push_back(t);
    const auto outs = graphs::run(graph_tag<Cell>(kBackwardTag, a), inputs, [&a](const graphs::Tensors& in) {
      ForwardResult f;
      f.output = in[kLayerTensors + 3];
      f.saved = in[kLayerTensors + 4];
      f.cells = in[kLayerTensors + 5];
      const BackwardResult g = sequence_backward<Cell, CudaPointwise>(
          with_layer_tensors(a, in), in[kLayerTensors], in[kLayerTensors + 1], in[kLayerTensors + 2], f);
      return graphs::Tensors{g.grad_input, g.grad_h0,   g.grad_c0,   g.grad_w_ih,
                             g.grad_w_hh,  g.grad_b_ih, g.grad_b_hh, g.grad_w_hr};
    });
    if (outs) {
      const graphs::Tensors& o = *outs;
      return BackwardResult{o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]};
    }
  }
  return sequence_backward<Cell, CudaPointwise>(a, grad_output, grad_h_n, grad_c_n, fwd);
}

// The Runner (see csrc/sequence/layer_ops.h) of the cuda backend.
struct CudaRunner {
  template <typename Cell>
  static ForwardResult forward(const LayerArgs& a) {
    const c10::cuda::CUDAGuard device(a.input.device());  // custom ops get no device guard from the dispatcher
    switch (choose_path(Cell::kName, a)) {
      case CudaPath::kStepwise:
        return stepwise_forward<Cell>(a);
      case CudaPath::kPersistent:
        return persistent::persistent_forward<Cell>(a);
    }
    TORCH_CHECK(false, "rnnfused: unknown CUDA path");
  }

  template <typename Cell>
  static BackwardResult backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const ForwardResult& fwd) {
    const c10::cuda::CUDAGuard device(a.input.device());
    switch (choose_path(Cell::kName, a)) {
      case CudaPath::kStepwise:
        return stepwise_backward<Cell>(a, grad_output, grad_h_n, grad_c_n, fwd);
      case CudaPath::kPersistent:
        return persistent::persistent_backward<Cell>(a, grad_output, grad_h_n, grad_c_n, fwd);
    }
    TORCH_CHECK(false, "rnnfused: unknown CUDA path");
  }
};

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(rnnfused, CUDA, m) { register_layer_ops<cuda::CudaRunner>(m); }

}  // namespace rnnfused
