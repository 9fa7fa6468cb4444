// The pointwise epilogues of the persistent kernels: everything cell-specific (Cell::forward / Cell::backward of
// common/cell_math.h), as policies of the kernel skeleton in persistent_kernel.cuh.
//
// Policy interface (Args, Prefetch, Result, Smem as below):
//   phases(a)                      phases of the launch
//   init(a, geo, smem)             on-chip state, biases, lengths
//   v0(a, geo, i, b)               entry i of this CTA's segment of the initial vector, batch row b
//   prefetch(...)                  this step's pointwise inputs into registers (independent of the recurrence)
//   apply<kDefer>(..., v, res)     sums the partials, runs the cell, writes the exchanged slice through `v` and the
//                                  on-chip state; the outputs too unless kDefer (then they wait in `res`)
//   store(..., res)                the outputs kept back by apply<true> (the store_first variant)
//   finish(a, geo, smem)           after the last phase
//
// In-sequence resets (SequenceArgs::resets, starts_from_initial in common/step.h) live in the epilogues too: the
// forward hands (h0, c0) instead of its new state to a step that starts a segment (through v and the on-chip state;
// the outputs keep the new state); the backward moves the gradient entering such a step into grad_h0 / grad_c0 and
// carries zero into its neighbour. What they need per step is prefetched with the other pointwise inputs, and
// without resets the only cost is the null check.
#pragma once

#include <climits>
#include <cstdint>

#include "../../common/cell_math.h"
#include "../../common/step.h"
#include "persistent_exchange.cuh"
#include "persistent_launch.cuh"
#include "persistent_mma.cuh"
#include "persistent_plan.cuh"

namespace rnnfused {
namespace persistent {

// The (unit, batch row) elements of one pass a thread handles: e = threadIdx.x + i*kThreads, u = e % units.
struct Element {
  bool valid;  // inside this pass and a real unit (j < H)
  int u;       // unit within the CTA
  int b;       // batch row
  int j;       // hidden unit
};

__device__ __forceinline__ Element element(const Geometry& geo, int i, int col0, int cols) {
  const int e = int(threadIdx.x) + i * kThreads;
  Element el;
  el.u = e % geo.units;
  el.b = col0 + e / geo.units;
  el.j = int(blockIdx.x) * geo.units + el.u;
  el.valid = e < geo.units * cols && el.j < geo.hidden;
  return el;
}

// Sum of the split-K partials of (row, batch column r) over the active warps, in warp order (deterministic).
template <typename A>
__device__ __forceinline__ A reduce_partials(const A* partials, const Geometry& geo, int row, int r) {
  A sum = A(0);
  const int warp_stride = geo.n_chunk * geo.partial_stride;
  for (int w = 0; w < geo.active_warps; ++w) sum += partials[w * warp_stride + r * geo.partial_stride + row];
  return sum;
}

// This CTA's [units][ring_rows] state from a [B, H] tensor, read as value(b*H + j); zero for padding rows and units.
template <typename A, typename ValueFn>
__device__ __forceinline__ void load_state(A* state, const Geometry& geo, ValueFn value) {
  for (int i = threadIdx.x; i < geo.units * geo.ring_rows; i += kThreads) {
    const int u = i % geo.units, b = i / geo.units, j = int(blockIdx.x) * geo.units + u;
    state[u * geo.ring_rows + b] = (j < geo.hidden && b < geo.batch) ? value(int64_t(b) * geo.hidden + j) : A(0);
  }
}

// Batch lengths → shared memory (INT_MAX: every step is active).
__device__ __forceinline__ void init_lengths(int* lengths_s, const int64_t* lengths, const Geometry& geo) {
  for (int b = threadIdx.x; b < geo.ring_rows; b += kThreads) {
    lengths_s[b] = (lengths != nullptr && b < geo.batch) ? int(lengths[b]) : INT_MAX;
  }
}

// ============================================================================================== forward epilogue
template <typename Cell, typename Mma>
struct ForwardEpilogue {
  using T = typename Mma::Storage;  // storage
  using A = typename Mma::Acc;      // accumulation, state and pointwise math
  using Traits = StorageTraits<T>;
  using Args = ForwardArgs<T>;
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  static constexpr bool kCell = Cell::kHasCellState;

  struct Prefetch {
    A x[G];  // x W_ihᵀ of this step (no bias)
    // Resets: the next step starts a segment of this row, from (h0, c0) (valid when next_starts).
    bool next_starts;
    T h0;
    A c0;
  };

  // One element's outputs (zeros and the carried c on a padded step).
  struct Result {
    T out;
    T saved[S > 0 ? S : 1];
    A cell;
  };

  struct Smem {
    A* h_prev;  // [units][ring_rows]  h_{t-1} as stored (T precision)
    A* c;       // [units][ring_rows]  c_{t-1} (LSTM)
    A* bias;    // [2][G][units]       b_ih, b_hh of this CTA's units
    int* lengths;
    __device__ explicit Smem(unsigned char* smem, const Geometry& geo) {
      A* state = reinterpret_cast<A*>(smem + geo.off_state);
      h_prev = state;
      c = state + geo.units * geo.ring_rows;
      bias = reinterpret_cast<A*>(smem + geo.off_bias);
      lengths = reinterpret_cast<int*>(smem + geo.off_lengths);
    }
  };

  __device__ static int phases(const Args& a) { return a.steps; }
  __device__ static int time_of(const Args& a, int s) { return a.reverse ? a.steps - 1 - s : s; }

  __device__ static void init(const Args& a, const Geometry& geo, unsigned char* smem) {
    Smem sm(smem, geo);
    const int H = geo.hidden, cta0 = int(blockIdx.x) * geo.units;
    load_state(sm.h_prev, geo, [&](int64_t at) { return Traits::to_acc(a.h0[at]); });
    if (kCell) load_state(sm.c, geo, [&](int64_t at) { return a.c0[at]; });
    for (int i = threadIdx.x; i < G * geo.units; i += kThreads) {
      const int g = i / geo.units, j = cta0 + i % geo.units;
      const bool real = j < H;
      sm.bias[i] = (real && a.b_ih) ? Traits::to_acc(a.b_ih[g * H + j]) : A(0);
      sm.bias[G * geo.units + i] = (real && a.b_hh) ? Traits::to_acc(a.b_hh[g * H + j]) : A(0);
    }
    init_lengths(sm.lengths, a.lengths, geo);
  }

  // v_0 = h0 (entry i of the segment is unit i of this CTA).
  __device__ static T v0(const Args& a, const Geometry& geo, int i, int b) {
    const int j = int(blockIdx.x) * geo.units + i;
    return (j < geo.hidden && b < geo.batch) ? Mma::operand(a.h0[int64_t(b) * geo.hidden + j]) : Traits::zero();
  }

  __device__ static void prefetch(const Args& a, const Geometry& geo, int s, int col0, int cols,
                                  Prefetch (&pre)[kEpilogueElems]) {
    const int64_t t = time_of(a, s), GH = int64_t(G) * geo.hidden;
    const bool resets = a.resets != nullptr && s + 1 < a.steps;
    const int t_next = resets ? time_of(a, s + 1) : 0;
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const T* xg = a.xg + (t * geo.batch + el.b) * GH + el.j;
#pragma unroll
      for (int g = 0; g < G; ++g) pre[i].x[g] = Traits::to_acc(xg[int64_t(g) * geo.hidden]);
      pre[i].next_starts = false;
      if (resets) {  // h0/c0 loaded unconditionally: independent loads, no dependence on the flag's latency
        const int64_t at = int64_t(el.b) * geo.hidden + el.j;
        pre[i].next_starts = starts_from_initial(a.resets, a.reverse, a.steps, geo.batch, t_next, el.b);
        pre[i].h0 = a.h0[at];
        if (kCell) pre[i].c0 = a.c0[at];
      }
    }
  }

  __device__ static void store_element(const Args& a, const Geometry& geo, int t, const Element& el,
                                       const Result& r) {
    const int H = geo.hidden;
    const int64_t bt = int64_t(t) * geo.batch + el.b;
    a.output[bt * H + el.j] = r.out;
#pragma unroll
    for (int k = 0; k < S; ++k) a.saved[bt * S * H + int64_t(k) * H + el.j] = r.saved[k];
    if (kCell) a.cells[bt * H + el.j] = r.cell;
  }

  template <bool kDefer>
  __device__ static void apply(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Prefetch (&pre)[kEpilogueElems], const A* partials, unsigned char* smem,
                               const VecOut<T>& v_out, Result (&res)[kEpilogueElems]) {
    Smem sm(smem, geo);
    const int t = time_of(a, s);
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const int st = el.u * geo.ring_rows + el.b;  // state index
      const A h_prev = sm.h_prev[st];
      const A c_prev = kCell ? sm.c[st] : A(0);
      T* v = v_out.at(el.b, el.u);
      Result& r = res[i];
      if (t < sm.lengths[el.b]) {
        A x[G], hg[G], sv[S > 0 ? S : 1];
#pragma unroll
        for (int g = 0; g < G; ++g) {
          x[g] = pre[i].x[g] + sm.bias[g * geo.units + el.u];
          hg[g] = reduce_partials(partials, geo, g * geo.units + el.u, el.b - col0) +
                  sm.bias[(G + g) * geo.units + el.u];
        }
        A c_new = A(0), out = A(0);
        Cell::forward(x, hg, c_prev, h_prev, sv, c_new, out);
        r.out = Traits::from_acc(out);
#pragma unroll
        for (int k = 0; k < S; ++k) r.saved[k] = Traits::from_acc(sv[k]);
        r.cell = c_new;
        if (kCell) sm.c[st] = c_new;
        sm.h_prev[st] = Traits::to_acc(r.out);
        *v = Mma::operand(r.out);
      } else {  // padded step: zero output, the state passes through
        r.out = Traits::zero();
#pragma unroll
        for (int k = 0; k < S; ++k) r.saved[k] = Traits::zero();
        r.cell = c_prev;
        *v = Mma::operand(Traits::from_acc(h_prev));
      }
      if (pre[i].next_starts) {  // a reset: the next step starts from (h0, c0); this step's outputs are unchanged
        sm.h_prev[st] = Traits::to_acc(pre[i].h0);
        if (kCell) sm.c[st] = pre[i].c0;
        *v = Mma::operand(pre[i].h0);
      }
      if (!kDefer) store_element(a, geo, t, el, r);
    }
  }

  __device__ static void store(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Result (&res)[kEpilogueElems]) {
    const int t = time_of(a, s);
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (el.valid) store_element(a, geo, t, el, res[i]);
    }
  }

  __device__ static void finish(const Args& a, const Geometry& geo, unsigned char* smem) {
    Smem sm(smem, geo);
    const int cta0 = int(blockIdx.x) * geo.units;
    for (int i = threadIdx.x; i < geo.units * geo.batch; i += kThreads) {
      const int u = i % geo.units, b = i / geo.units, j = cta0 + u;
      if (j < geo.hidden) a.h_n[int64_t(b) * geo.hidden + j] = Traits::from_acc(sm.h_prev[u * geo.ring_rows + b]);
    }
  }
};

// ============================================================================================= backward epilogue
// Phase s < T handles forward step T-1-s; phase T only turns the last recurrent product into grad_h0.
template <typename Cell, typename Mma>
struct BackwardEpilogue {
  using T = typename Mma::Storage;  // storage
  using A = typename Mma::Acc;      // accumulation, state and pointwise math
  using Traits = StorageTraits<T>;
  using Args = BackwardArgs<T>;
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  static constexpr bool kCell = Cell::kHasCellState;

  struct Prefetch {
    A grad_out;
    A sv[S > 0 ? S : 1];
    A c, c_prev;  // LSTM
    A h_prev;     // GRU
    A out;        // Elman RNN
    // Resets: this step started a segment (then c_prev is c0: LSTM); the next step (forward order) started one (then
    // the gradient entering it belongs to h0/c0); this element's sums of such gradients so far (zero without resets).
    bool starts, next_starts;
    A c0;
    A to_h0, to_c0;
  };

  // One element's gate gradients (zeros on a padded step); gh only where it differs from gx.
  struct Result {
    T gx[G];
    T gh[Cell::kSplitRecurrentGrad ? G : 1];
  };

  struct Smem {
    A* dh;   // [units][ring_rows]  the part of dL/dh_t that skips W_hh (grad_h_n at first)
    A* dc;   // [units][ring_rows]  dL/dc_t (LSTM)
    int* lengths;
    __device__ explicit Smem(unsigned char* smem, const Geometry& geo) {
      A* state = reinterpret_cast<A*>(smem + geo.off_state);
      dh = state;
      dc = state + geo.units * geo.ring_rows;
      lengths = reinterpret_cast<int*>(smem + geo.off_lengths);
    }
  };

  __device__ static int phases(const Args& a) { return a.steps + 1; }
  // The forward step (processing order) and the time index of phase s.
  __device__ static int forward_step(const Args& a, int s) { return a.steps - 1 - s; }
  __device__ static int time_of(const Args& a, int s) {
    const int f = forward_step(a, s);
    return a.reverse ? a.steps - 1 - f : f;
  }

  __device__ static void init(const Args& a, const Geometry& geo, unsigned char* smem) {
    Smem sm(smem, geo);
    load_state(sm.dh, geo, [&](int64_t at) { return Traits::to_acc(a.grad_h_n[at]); });
    if (kCell) load_state(sm.dc, geo, [&](int64_t at) { return Traits::to_acc(a.grad_c_n[at]); });
    init_lengths(sm.lengths, a.lengths, geo);
  }

  // No dgh after the last step.
  __device__ static T v0(const Args&, const Geometry&, int, int) { return Traits::zero(); }

  __device__ static void prefetch(const Args& a, const Geometry& geo, int s, int col0, int cols,
                                  Prefetch (&pre)[kEpilogueElems]) {
    const int H = geo.hidden;
    const bool resets = a.resets != nullptr;
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      pre[i].to_h0 = pre[i].to_c0 = A(0);
      if (resets) {  // every phase: the last one adds the sums into grad_h0 / grad_c0
        const int64_t at = int64_t(el.b) * H + el.j;
        pre[i].to_h0 = a.reset_grad_h0[at];
        if (kCell) pre[i].to_c0 = a.reset_grad_c0[at];
      }
    }
    if (s >= a.steps) return;
    const int t = time_of(a, s), f = forward_step(a, s);
    const int t_prev = a.reverse ? t + 1 : t - 1;
    const int t_next = s > 0 ? time_of(a, s - 1) : 0;  // the step after this one in forward order
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const int64_t bt = int64_t(t) * geo.batch + el.b;
      pre[i].c = pre[i].c_prev = pre[i].h_prev = pre[i].out = A(0);  // what this cell does not read
      pre[i].grad_out = Traits::to_acc(a.grad_out[bt * H + el.j]);
#pragma unroll
      for (int k = 0; k < S; ++k) pre[i].sv[k] = Traits::to_acc(a.saved[bt * S * H + int64_t(k) * H + el.j]);
      if (kCell) {
        pre[i].c = a.cells[bt * H + el.j];
        pre[i].c_prev = f == 0 ? a.c0[int64_t(el.b) * H + el.j]
                               : a.cells[(int64_t(t_prev) * geo.batch + el.b) * H + el.j];
      }
      if (Cell::kReadsPrevHidden) pre[i].h_prev = Traits::to_acc(a.h_prev[bt * H + el.j]);
      if (Cell::kReadsOutput) pre[i].out = Traits::to_acc(a.output[bt * H + el.j]);
      pre[i].starts = pre[i].next_starts = false;
      if (resets) {  // c0 loaded unconditionally: independent of the flag's latency
        pre[i].next_starts = s > 0 && starts_from_initial(a.resets, a.reverse, a.steps, geo.batch, t_next, el.b);
        if (kCell) {
          pre[i].starts = starts_from_initial(a.resets, a.reverse, a.steps, geo.batch, t, el.b);
          pre[i].c0 = a.c0[int64_t(el.b) * H + el.j];
        }
      }
    }
  }

  __device__ static void store_element(const Args& a, const Geometry& geo, int t, const Element& el,
                                       const Result& r) {
    const int64_t GH = int64_t(G) * geo.hidden;
    const int64_t at = (int64_t(t) * geo.batch + el.b) * GH + el.j;
#pragma unroll
    for (int g = 0; g < G; ++g) {
      a.dgx[at + int64_t(g) * geo.hidden] = r.gx[g];
      if (Cell::kSplitRecurrentGrad) a.dgh[at + int64_t(g) * geo.hidden] = r.gh[g];
    }
  }

  template <bool kDefer>
  __device__ static void apply(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Prefetch (&pre)[kEpilogueElems], const A* partials, unsigned char* smem,
                               const VecOut<T>& v_out, Result (&res)[kEpilogueElems]) {
    Smem sm(smem, geo);
    const int H = geo.hidden;
    const int t = s < a.steps ? time_of(a, s) : 0;
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const int st = el.u * geo.ring_rows + el.b;
      // dL/dh_t: the recurrent product dgh_{t+1} W_hh (column j) plus the part that skipped W_hh.
      A dh_in = reduce_partials(partials, geo, el.u, el.b - col0) + sm.dh[st];
      const int64_t at = int64_t(el.b) * H + el.j;  // [B, H] index
      if (s == a.steps) {  // after the first forward step: the gradients of the initial states (+ the resets' sums)
        a.grad_h0[at] = Traits::from_acc(dh_in + pre[i].to_h0);
        if (kCell) a.grad_c0[at] = Traits::from_acc(sm.dc[st] + pre[i].to_c0);
        continue;
      }
      if (pre[i].next_starts) {  // the next step started from (h0, c0): what enters it is theirs, not this step's
        a.reset_grad_h0[at] = pre[i].to_h0 + dh_in;
        dh_in = A(0);
        if (kCell) {
          a.reset_grad_c0[at] = pre[i].to_c0 + sm.dc[st];
          sm.dc[st] = A(0);
        }
      }
      const A dout = dh_in + pre[i].grad_out;
      T* v = v_out.at(el.b, el.u);
      Result& r = res[i];
      if (t < sm.lengths[el.b]) {
        A gx[G], gh[G], dc_prev = A(0), dh_direct = A(0);
        const A c_prev = kCell && pre[i].starts ? pre[i].c0 : pre[i].c_prev;
        Cell::backward(dout, kCell ? sm.dc[st] : A(0), pre[i].sv, pre[i].c, c_prev, pre[i].h_prev, pre[i].out, gx,
                       gh, dc_prev, dh_direct);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          r.gx[g] = Traits::from_acc(gx[g]);
          const T gh_t = Traits::from_acc(gh[g]);
          if (Cell::kSplitRecurrentGrad) r.gh[g] = gh_t;
          v[g * geo.units] = Mma::operand(gh_t);
        }
        if (kCell) sm.dc[st] = dc_prev;
        sm.dh[st] = dh_direct;
      } else {  // padded step: no gate gradients, dL/dh and dL/dc pass through unchanged
#pragma unroll
        for (int g = 0; g < G; ++g) {
          r.gx[g] = Traits::zero();
          if (Cell::kSplitRecurrentGrad) r.gh[g] = Traits::zero();
          v[g * geo.units] = Traits::zero();
        }
        sm.dh[st] = dout;
      }
      if (!kDefer) store_element(a, geo, t, el, r);
    }
  }

  __device__ static void store(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Result (&res)[kEpilogueElems]) {
    if (s >= a.steps) return;  // the last phase stored grad_h0 / grad_c0 in apply
    const int t = time_of(a, s);
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (el.valid) store_element(a, geo, t, el, res[i]);
    }
  }

  __device__ static void finish(const Args&, const Geometry&, unsigned char*) {}
};

}  // namespace persistent
}  // namespace rnnfused
