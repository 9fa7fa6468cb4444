// The fused backward pointwise kernel of one time step (BPTT): gate-gradient computation and the cell-state
// gradient carry for every (batch row, hidden unit), in one launch. The per-element math is Cell::backward
// (cell_math.h); the recurrent GEMM dgh W_hh that follows is the launcher's.
#include "pointwise.h"
#include "pointwise_common.cuh"

namespace rnnfused {
namespace cuda {
namespace {

// Grid: see pointwise_common.cuh. kFromDr: the gradient into the cell output is dr (LSTM with a projection), so
// dh_direct ([B, H_out], H_out != H in general) is written by a separate grid-stride loop over H_out: zero on
// active rows (all of dL/dh_{t-1} then flows through W_hh), dh_in on padded ones.
template <typename Cell, bool kFromDr, int V, typename T, typename C>
__global__ void __launch_bounds__(kMaxThreads) backward_step_kernel(const BackwardStep<T, C> s) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  constexpr int S1 = S > 0 ? S : 1;
  const int64_t H = s.hidden;
  const int64_t H_out = s.out_size;
  const int64_t lane = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t lanes = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t j = lane * V;  // first unit of this thread
  if (!kFromDr && j >= H) return;

  for (int64_t b = blockIdx.y; b < s.batch; b += gridDim.y) {
    const bool active = row_active(s.lengths, s.t, b);
    if (kFromDr) {
      for (int64_t k = lane; k < H_out; k += lanes) {
        s.dh_direct[b * H_out + k] = active ? from_acc<T>(C(0)) : s.dh_in[b * H_out + k];
      }
    }
    if (j >= H) continue;
    const int64_t row = b * H + j;            // into [B, H] (H_out == H unless kFromDr)
    const int64_t gate_row = b * G * H + j;   // into [B, G*H], gate block 0
    const int64_t saved_row = b * S * H + j;  // into [B, S*H], block 0

    if (!active) {  // padded step: the state passed through untouched, so does its gradient (dc stays as is)
      if (!kFromDr) {
        const Pack<T, V> dh = load<V>(s.dh_in + row), go = load<V>(s.grad_out + row);
        Pack<T, V> pass;
#pragma unroll
        for (int v = 0; v < V; ++v) pass.v[v] = from_acc<T>(to_acc(dh.v[v]) + to_acc(go.v[v]));
        store<V>(s.dh_direct + row, pass);
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        store<V>(s.dgx + gate_row + g * H, zeros<V, T>());
        if (Cell::kSplitRecurrentGrad) store<V>(s.dgh + gate_row + g * H, zeros<V, T>());
      }
      continue;
    }

    // dL/d(cell output) of this step.
    Pack<C, V> dout;
    if (kFromDr) {
      const Pack<T, V> dr = load<V>(s.dr + row);
#pragma unroll
      for (int v = 0; v < V; ++v) dout.v[v] = to_acc(dr.v[v]);
    } else {
      const Pack<T, V> dh = load<V>(s.dh_in + row), go = load<V>(s.grad_out + row);
#pragma unroll
      for (int v = 0; v < V; ++v) dout.v[v] = to_acc(dh.v[v]) + to_acc(go.v[v]);
    }
    Pack<T, V> saved[S1];
#pragma unroll
    for (int k = 0; k < S; ++k) saved[k] = load<V>(s.saved + saved_row + k * H);
    Pack<C, V> c, c_prev, dc;
    if (Cell::kHasCellState) {
      c = load<V>(s.c + row);
      c_prev = load<V>(s.c_prev + row);
      dc = load<V>(s.dc + row);
    }
    Pack<T, V> h_prev, out;
    if (Cell::kReadsPrevHidden) h_prev = load<V>(s.h_prev + row);
    if (Cell::kReadsOutput) out = load<V>(s.out + row);

    Pack<T, V> dgx[G], dgh[G], dh_direct;
    Pack<C, V> dc_prev;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      C sv[S1], gx[G], gh[G];
#pragma unroll
      for (int k = 0; k < S; ++k) sv[k] = to_acc(saved[k].v[v]);
      C dcp = C(0), dd = C(0);
      Cell::backward(dout.v[v], Cell::kHasCellState ? dc.v[v] : C(0), sv, Cell::kHasCellState ? c.v[v] : C(0),
                     Cell::kHasCellState ? c_prev.v[v] : C(0),
                     Cell::kReadsPrevHidden ? C(to_acc(h_prev.v[v])) : C(0),
                     Cell::kReadsOutput ? C(to_acc(out.v[v])) : C(0), gx, gh, dcp, dd);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        dgx[g].v[v] = from_acc<T>(gx[g]);
        dgh[g].v[v] = from_acc<T>(gh[g]);
      }
      dc_prev.v[v] = dcp;
      dh_direct.v[v] = from_acc<T>(dd);
    }

#pragma unroll
    for (int g = 0; g < G; ++g) {
      store<V>(s.dgx + gate_row + g * H, dgx[g]);
      if (Cell::kSplitRecurrentGrad) store<V>(s.dgh + gate_row + g * H, dgh[g]);  // else dgh is dgx
    }
    if (Cell::kHasCellState) store<V>(s.dc + row, dc_prev);
    if (!kFromDr) store<V>(s.dh_direct + row, dh_direct);
  }
}

template <typename Cell, bool kFromDr, int V, typename T, typename C>
cudaError_t launch_backward(const BackwardStep<T, C>& s, cudaStream_t stream) {
  const Geometry geo = geometry(s.hidden / V, s.batch);
  backward_step_kernel<Cell, kFromDr, V><<<geo.grid, geo.block, 0, stream>>>(s);
  return cudaGetLastError();
}

// With dr, dh_in / grad_out / dh_direct are only accessed one value at a time (the H_out loop).
template <typename T, typename C>
bool backward_packable(const BackwardStep<T, C>& s, int V) {
  const bool from_dr = s.dr != nullptr;
  return s.hidden % V == 0 && aligned(s.saved, V) && aligned(s.c, V) && aligned(s.c_prev, V) &&
         aligned(s.h_prev, V) && aligned(s.out, V) && aligned(s.dc, V) && aligned(s.dgx, V) && aligned(s.dgh, V) &&
         aligned(s.dr, V) &&
         (from_dr || (aligned(s.dh_in, V) && aligned(s.grad_out, V) && aligned(s.dh_direct, V)));
}

template <typename Cell, bool kFromDr, typename T, typename C>
cudaError_t dispatch_width(const BackwardStep<T, C>& s, cudaStream_t stream) {
  constexpr int V = pack_width<C>();
  if (backward_packable(s, V)) return launch_backward<Cell, kFromDr, V>(s, stream);
  return launch_backward<Cell, kFromDr, 1>(s, stream);
}

}  // namespace

template <typename Cell, typename T, typename C>
cudaError_t backward_step(const BackwardStep<T, C>& s, cudaStream_t stream) {
  if (!valid_sizes(s.batch, s.hidden) || s.out_size <= 0) return cudaErrorInvalidValue;
  if (s.batch == 0) return cudaSuccess;
  if (!s.dh_in || !s.dgx || !s.dh_direct || (Cell::kSplitRecurrentGrad && !s.dgh) || (Cell::kSaved > 0 && !s.saved) ||
      (Cell::kReadsPrevHidden && !s.h_prev) || (Cell::kReadsOutput && !s.out) ||
      (Cell::kHasCellState && (!s.c || !s.c_prev || !s.dc))) {
    return cudaErrorInvalidValue;
  }
  if (s.dr != nullptr) {
    // Only an LSTM has a projection; the kernel is instantiated for cells with a cell state only.
    if constexpr (Cell::kHasCellState) return dispatch_width<Cell, true>(s, stream);
    return cudaErrorInvalidValue;
  }
  // Without a projection dout = dh_in + grad_out, both [B, H]: H_out must equal H.
  if (!s.grad_out || s.out_size != s.hidden) return cudaErrorInvalidValue;
  return dispatch_width<Cell, false>(s, stream);
}

#define RNNF_INSTANTIATE_BACKWARD(Cell, T, C) \
  template cudaError_t backward_step<Cell, T, C>(const BackwardStep<T, C>&, cudaStream_t);
#define RNNF_INSTANTIATE_BACKWARD_CELL(Cell) RNNF_CUDA_FOR_EACH_TYPE(RNNF_INSTANTIATE_BACKWARD, Cell)
RNNF_FOR_EACH_CELL(RNNF_INSTANTIATE_BACKWARD_CELL)
#undef RNNF_INSTANTIATE_BACKWARD_CELL
#undef RNNF_INSTANTIATE_BACKWARD

}  // namespace cuda
}  // namespace rnnfused
