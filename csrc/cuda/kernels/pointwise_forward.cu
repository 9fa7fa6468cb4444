// The fused forward pointwise kernel of one time step: biases + gate nonlinearities + state update + what backward
// needs, for every (batch row, hidden unit), in one launch. The per-element math is Cell::forward (cell_math.h).
#include "launch_status.h"
#include "pointwise.h"
#include "pointwise_common.cuh"

namespace rnnfused {
namespace cuda {
namespace {

// Grid: see pointwise_common.cuh. The thread owning units j..j+V-1 of row b reads/writes exactly those units of
// every [B, H]-shaped tensor and of each gate block of the [B, G*H] / [B, S*H] ones, so h_prev may alias h_state
// (each element is read before the same thread overwrites it).
template <typename Cell, int V, typename T, typename C>
__global__ void __launch_bounds__(kMaxThreads) forward_step_kernel(const ForwardStep<T, C> s) {
  constexpr int G = Cell::kGates;
  constexpr int S = Cell::kSaved;
  constexpr int S1 = S > 0 ? S : 1;
  const int64_t H = s.hidden;
  const int64_t j = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;  // first unit
  if (j >= H) return;

  for (int64_t b = blockIdx.y; b < s.batch; b += gridDim.y) {
    const int64_t row = b * H + j;            // into [B, H]
    const int64_t gate_row = b * G * H + j;   // into [B, G*H], gate block 0
    const int64_t saved_row = b * S * H + j;  // into [B, S*H], block 0

    if (!row_active(s.lengths, s.t, b)) {  // padded step: zero output, state carried through
      store<V>(s.out + row, zeros<V, T>());
#pragma unroll
      for (int k = 0; k < S; ++k) store<V>(s.saved + saved_row + k * H, zeros<V, T>());
      if (Cell::kHasCellState) store<V>(s.c_new + row, load<V>(s.c_prev + row));
      continue;
    }

    // Biases are re-read per row (from L1/L2): a block usually serves one row, and keeping them in registers
    // across rows would double the register footprint.
    Pack<T, V> xg[G], hg[G], b_ih[G], b_hh[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      xg[g] = load<V>(s.xg + gate_row + g * H);
      hg[g] = load<V>(s.hg + gate_row + g * H);
      b_ih[g] = load<V>(s.b_ih + g * H + j);
      b_hh[g] = load<V>(s.b_hh + g * H + j);
    }
    Pack<C, V> c_prev;
    if (Cell::kHasCellState) c_prev = load<V>(s.c_prev + row);
    Pack<T, V> h_prev;
    if (Cell::kReadsPrevHidden) h_prev = load<V>(s.h_prev + row);

    Pack<T, V> saved[S1], out;
    Pack<C, V> c_new;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      C x[G], h[G], sv[S1];
#pragma unroll
      for (int g = 0; g < G; ++g) {
        x[g] = to_acc(xg[g].v[v]) + to_acc(b_ih[g].v[v]);
        h[g] = to_acc(hg[g].v[v]) + to_acc(b_hh[g].v[v]);
      }
      const C cp = Cell::kHasCellState ? c_prev.v[v] : C(0);
      const C hp = Cell::kReadsPrevHidden ? C(to_acc(h_prev.v[v])) : C(0);
      C cn = C(0), o = C(0);
      Cell::forward(x, h, cp, hp, sv, cn, o);
#pragma unroll
      for (int k = 0; k < S; ++k) saved[k].v[v] = from_acc<T>(sv[k]);
      c_new.v[v] = cn;
      out.v[v] = from_acc<T>(o);
    }

#pragma unroll
    for (int k = 0; k < S; ++k) store<V>(s.saved + saved_row + k * H, saved[k]);
    if (Cell::kHasCellState) store<V>(s.c_new + row, c_new);
    store<V>(s.out + row, out);
    if (s.h_state != nullptr) store<V>(s.h_state + row, out);
  }
}

template <typename Cell, int V, typename T, typename C>
cudaError_t launch_forward(const ForwardStep<T, C>& s, cudaStream_t stream) {
  const Geometry geo = geometry(s.hidden / V, s.batch);
  forward_step_kernel<Cell, V><<<geo.grid, geo.block, 0, stream>>>(s);
  return cudaGetLastError();
}

template <typename T, typename C>
bool forward_packable(const ForwardStep<T, C>& s, int V) {
  return s.hidden % V == 0 && aligned(s.xg, V) && aligned(s.hg, V) && aligned(s.b_ih, V) && aligned(s.b_hh, V) &&
         aligned(s.h_prev, V) && aligned(s.c_prev, V) && aligned(s.saved, V) && aligned(s.c_new, V) &&
         aligned(s.out, V) && aligned(s.h_state, V);
}

}  // namespace

template <typename Cell, typename T, typename C>
cudaError_t forward_step(const ForwardStep<T, C>& s, cudaStream_t stream) {
  if (!valid_sizes(s.batch, s.hidden)) return cudaErrorInvalidValue;
  if (s.batch == 0) return cudaSuccess;
  if (!s.xg || !s.hg || !s.b_ih || !s.b_hh || !s.out || (Cell::kSaved > 0 && !s.saved) ||
      (Cell::kReadsPrevHidden && !s.h_prev) || (Cell::kHasCellState && (!s.c_prev || !s.c_new))) {
    return cudaErrorInvalidValue;
  }
  constexpr int V = pack_width<C>();
  if (forward_packable(s, V)) return launch_forward<Cell, V>(s, stream);
  return launch_forward<Cell, 1>(s, stream);
}

cudaError_t probe_kernel_image() {
  return probe_kernel_image(reinterpret_cast<const void*>(forward_step_kernel<LstmCell, 1, float, float>));
}

#define RNNF_INSTANTIATE_FORWARD(Cell, T, C) \
  template cudaError_t forward_step<Cell, T, C>(const ForwardStep<T, C>&, cudaStream_t);
#define RNNF_INSTANTIATE_FORWARD_CELL(Cell) RNNF_CUDA_FOR_EACH_TYPE(RNNF_INSTANTIATE_FORWARD, Cell)
RNNF_FOR_EACH_CELL(RNNF_INSTANTIATE_FORWARD_CELL)
#undef RNNF_INSTANTIATE_FORWARD_CELL
#undef RNNF_INSTANTIATE_FORWARD

}  // namespace cuda
}  // namespace rnnfused
