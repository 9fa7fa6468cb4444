// The persistent recurrence kernel: one cooperative launch runs every step of one layer-direction.
//
// Per CTA (see persistent_plan.cuh for the vocabulary and csrc/cuda/persistent/DESIGN.md for the budget):
//   once:      its W slice → shared memory (stays there for the whole sequence); its state → shared memory;
//              its part of the initial vector v_0 → ring slot 0; flags[cta] = 1
//   step s:    for each batch pass: prefetch this step's pointwise inputs (independent of the recurrence) into
//              registers → each warp waits for the producers of its K range, streams that range of v_{s-1}
//              through a cp.async pipeline into the tensor-core dot products, stores its split-K partial sums →
//              the pointwise epilogue (Cell::forward / Cell::backward of cell_math.h) sums the partials in a fixed
//              order and writes its slice of v_s and of the outputs;  then flags[cta] = s + 2
// The epilogue policies (ForwardEpilogue, BackwardEpilogue) own everything cell-specific.
#pragma once

#include <climits>
#include <cstdint>
#include <type_traits>

#include "../../common/cell_math.h"
#include "persistent_launch.cuh"
#include "persistent_mma.cuh"
#include "persistent_plan.cuh"
#include "persistent_sync.cuh"

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

// Producer-side helpers for the exchange ring [2, ring_rows, k_padded].
template <typename T>
__device__ __forceinline__ T* ring_slot(T* ring, const Geometry& geo, int slot) {
  return ring + int64_t(slot) * geo.ring_rows * geo.k_padded;
}

// Initial ring contents of this CTA's segment in both slots: slot 0 = v_0 (value(u_in_segment, b)), slot 1 = 0
// (its padding entries stay zero forever); the last CTA also zeroes the K tail beyond ctas*segment.
template <typename T, typename ValueFn>
__device__ __forceinline__ void init_ring(T* ring, const Geometry& geo, ValueFn value) {
  const int seg0 = int(blockIdx.x) * geo.segment;
  const bool last = int(blockIdx.x) == geo.ctas - 1;
  const int width = geo.segment + (last ? geo.k_padded - geo.ctas * geo.segment : 0);
  for (int i = threadIdx.x; i < width * geo.ring_rows; i += kThreads) {
    const int k = i % width, b = i / width;
    const int64_t at = int64_t(b) * geo.k_padded + seg0 + k;
    ring_slot(ring, geo, 0)[at] = k < geo.segment ? value(k, b) : StorageTraits<T>::zero();
    ring_slot(ring, geo, 1)[at] = StorageTraits<T>::zero();
  }
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
    init_ring(a.ring, geo, [&](int u, int b) {
      const int j = cta0 + u;
      return (j < H && b < geo.batch) ? Mma::operand(a.h0[int64_t(b) * H + j]) : Traits::zero();
    });
  }

  __device__ static void prefetch(const Args& a, const Geometry& geo, int s, int col0, int cols,
                                  Prefetch (&pre)[kEpilogueElems]) {
    const int64_t t = time_of(a, s), GH = int64_t(G) * geo.hidden;
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const T* xg = a.xg + (t * geo.batch + el.b) * GH + el.j;
#pragma unroll
      for (int g = 0; g < G; ++g) pre[i].x[g] = Traits::to_acc(xg[int64_t(g) * geo.hidden]);
    }
  }

  __device__ static void apply(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Prefetch (&pre)[kEpilogueElems], const A* partials, unsigned char* smem,
                               T* v_next) {
    Smem sm(smem, geo);
    const int H = geo.hidden;
    const int t = time_of(a, s);
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const int st = el.u * geo.ring_rows + el.b;  // state index
      const int64_t bt = int64_t(t) * geo.batch + el.b;
      const A h_prev = sm.h_prev[st];
      const A c_prev = kCell ? sm.c[st] : A(0);
      T* v = v_next + int64_t(el.b) * geo.k_padded + int64_t(blockIdx.x) * geo.segment + el.u;
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
        const T out_t = Traits::from_acc(out);
        a.output[bt * H + el.j] = out_t;
#pragma unroll
        for (int k = 0; k < S; ++k) a.saved[bt * S * H + int64_t(k) * H + el.j] = Traits::from_acc(sv[k]);
        if (kCell) {
          a.cells[bt * H + el.j] = c_new;
          sm.c[st] = c_new;
        }
        sm.h_prev[st] = Traits::to_acc(out_t);
        *v = Mma::operand(out_t);
      } else {  // padded step: zero output, the state passes through
        a.output[bt * H + el.j] = Traits::zero();
#pragma unroll
        for (int k = 0; k < S; ++k) a.saved[bt * S * H + int64_t(k) * H + el.j] = Traits::zero();
        if (kCell) a.cells[bt * H + el.j] = c_prev;
        *v = Mma::operand(Traits::from_acc(h_prev));
      }
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
    init_ring(a.ring, geo, [](int, int) { return Traits::zero(); });  // no dgh after the last step
  }

  __device__ static void prefetch(const Args& a, const Geometry& geo, int s, int col0, int cols,
                                  Prefetch (&pre)[kEpilogueElems]) {
    if (s >= a.steps) return;
    const int H = geo.hidden;
    const int t = time_of(a, s), f = forward_step(a, s);
    const int t_prev = a.reverse ? t + 1 : t - 1;
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
    }
  }

  __device__ static void apply(const Args& a, const Geometry& geo, int s, int col0, int cols,
                               const Prefetch (&pre)[kEpilogueElems], const A* partials, unsigned char* smem,
                               T* v_next) {
    Smem sm(smem, geo);
    const int H = geo.hidden;
    const int64_t GH = int64_t(G) * H;
    const int t = s < a.steps ? time_of(a, s) : 0;
#pragma unroll
    for (int i = 0; i < kEpilogueElems; ++i) {
      const Element el = element(geo, i, col0, cols);
      if (!el.valid) continue;
      const int st = el.u * geo.ring_rows + el.b;
      // dL/dh_t: the recurrent product dgh_{t+1} W_hh (column j) plus the part that skipped W_hh.
      const A dh_in = reduce_partials(partials, geo, el.u, el.b - col0) + sm.dh[st];
      if (s == a.steps) {  // after the first forward step: the gradients of the initial states
        a.grad_h0[int64_t(el.b) * H + el.j] = Traits::from_acc(dh_in);
        if (kCell) a.grad_c0[int64_t(el.b) * H + el.j] = Traits::from_acc(sm.dc[st]);
        continue;
      }
      const int64_t bt = int64_t(t) * geo.batch + el.b;
      const A dout = dh_in + pre[i].grad_out;
      T* v = v_next + int64_t(el.b) * geo.k_padded + int64_t(blockIdx.x) * geo.segment + el.u;
      T* dgx = a.dgx + bt * GH + el.j;
      T* dgh = a.dgh + bt * GH + el.j;
      if (t < sm.lengths[el.b]) {
        A gx[G], gh[G], dc_prev = A(0), dh_direct = A(0);
        Cell::backward(dout, kCell ? sm.dc[st] : A(0), pre[i].sv, pre[i].c, pre[i].c_prev, pre[i].h_prev,
                       pre[i].out, gx, gh, dc_prev, dh_direct);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          dgx[int64_t(g) * H] = Traits::from_acc(gx[g]);
          const T gh_t = Traits::from_acc(gh[g]);
          if (Cell::kSplitRecurrentGrad) dgh[int64_t(g) * H] = gh_t;
          v[g * geo.units] = Mma::operand(gh_t);
        }
        if (kCell) sm.dc[st] = dc_prev;
        sm.dh[st] = dh_direct;
      } else {  // padded step: no gate gradients, dL/dh and dL/dc pass through unchanged
#pragma unroll
        for (int g = 0; g < G; ++g) {
          dgx[int64_t(g) * H] = Traits::zero();
          if (Cell::kSplitRecurrentGrad) dgh[int64_t(g) * H] = Traits::zero();
          v[g * geo.units] = Traits::zero();
        }
        sm.dh[st] = dout;
      }
    }
  }

  __device__ static void finish(const Args&, const Geometry&, unsigned char*) {}
};

// ====================================================================================================== kernel
template <typename Mma>
__device__ __forceinline__ void load_weights(const typename Mma::Storage* packed, unsigned char* w_s,
                                             const Geometry& geo) {
  using T = typename Mma::Storage;
  const int pieces = geo.k_padded * int(sizeof(T)) / 16;  // 16-byte pieces per row
  const unsigned char* src =
      reinterpret_cast<const unsigned char*>(packed + int64_t(blockIdx.x) * geo.rows * geo.k_padded);
  for (int i = threadIdx.x; i < geo.rows * pieces; i += kThreads) {
    const int r = i / pieces, c = i - r * pieces;
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(src + (int64_t(r) * pieces + c) * 16));
    *reinterpret_cast<uint4*>(w_s + r * geo.row_stride + c * 16) = Mma::operand(v);
  }
}

// One chunk of the vector slot: rows [col0, col0 + rows) × 64 bytes at chunk `chunk` → a stage slot [rows][64 B].
template <typename T>
__device__ __forceinline__ void issue_chunk(unsigned char* slot, const T* v_prev, const Geometry& geo, int col0,
                                            int rows, int chunk, int lane) {
  const int64_t row_bytes = int64_t(geo.k_padded) * sizeof(T);
  const unsigned char* src = reinterpret_cast<const unsigned char*>(v_prev) + col0 * row_bytes + chunk * kChunkBytes;
  for (int i = lane; i < rows * 4; i += 32) {
    const int r = i >> 2, piece = (i & 3) * 16;
    cp_async_16(slot + r * kChunkBytes + piece, src + r * row_bytes + piece);
  }
}

// acc += W[:, chunks kc0..kc1) · v[col0.., same chunks]ᵀ for this warp: a kStages-deep cp.async pipeline (chunk
// c + kStages is in flight while chunk c is multiplied), one commit group per chunk (empty ones keep the count).
template <typename Mma, int MT, int NT, typename T>
__device__ __forceinline__ void warp_product(typename Mma::Acc (&acc)[MT][NT][4], const unsigned char* w_s,
                                             unsigned char* stage_w, const T* v_prev, const Geometry& geo, int col0,
                                             int nt_n, int kc0, int kc1, int lane) {
  const int slot_bytes = geo.n_chunk * kChunkBytes;
  const int rows = nt_n * 8;
  const int mt_n = geo.rows_padded / 16;
#pragma unroll
  for (int i = 0; i < kStages; ++i) {
    if (kc0 + i < kc1) issue_chunk(stage_w + i * slot_bytes, v_prev, geo, col0, rows, kc0 + i, lane);
    cp_async_commit();
  }
  for (int c = kc0; c < kc1; ++c) {
    unsigned char* slot = stage_w + ((c - kc0) & (kStages - 1)) * slot_bytes;
    cp_async_wait<kStages - 1>();  // chunk c has landed (groups complete in order)
    __syncwarp();
    Mma::template chunk<MT, NT>(acc, w_s + c * kChunkBytes, geo.row_stride, slot, geo.rows, mt_n, nt_n, lane);
    __syncwarp();                  // every lane is done with the slot before it is refilled
    if (c + kStages < kc1) issue_chunk(slot, v_prev, geo, col0, rows, c + kStages, lane);
    cp_async_commit();
  }
}

template <typename A, int MT, int NT>
__device__ __forceinline__ void store_partials(A* partials, const A (&acc)[MT][NT][4], const Geometry& geo, int warp,
                                               int mt_n, int nt_n, int lane) {
  const int g = lane >> 2, q = lane & 3, ps = geo.partial_stride;
  A* pw = partials + warp * geo.n_chunk * ps;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      if (mt < mt_n && nt < nt_n) {
        const int row = mt * 16 + g, col = nt * 8 + 2 * q;
        pw[col * ps + row] = acc[mt][nt][0];
        pw[(col + 1) * ps + row] = acc[mt][nt][1];
        pw[col * ps + row + 8] = acc[mt][nt][2];
        pw[(col + 1) * ps + row + 8] = acc[mt][nt][3];
      }
    }
  }
}

template <typename Epi, typename Mma>
__global__ void __launch_bounds__(kThreads, 1) persistent_recurrence_kernel(const typename Epi::Args args,
                                                                            const Geometry geo) {
  using T = typename Mma::Storage;
  using A = typename Mma::Acc;
  constexpr int MT = kMaxMTiles, NT = Mma::kMaxNTiles;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* w_s = smem + geo.off_weights;
  unsigned char* stage = smem + geo.off_stage;
  A* partials = reinterpret_cast<A*>(smem + geo.off_partials);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  load_weights<Mma>(args.w_packed, w_s, geo);
  Epi::init(args, geo, smem);
  __syncthreads();
  if (threadIdx.x == 0) st_release_gpu(args.flags + blockIdx.x, 1u);

  // This warp's K range (chunks) and the CTAs that produce it.
  const bool has_k = warp < geo.active_warps;
  const int kc0 = warp * geo.chunks / geo.active_warps;
  const int kc1 = (warp + 1) * geo.chunks / geo.active_warps;
  const int p_first = kc0 * geo.chunk_elems / geo.segment;
  const int p_last = min(geo.ctas - 1, (kc1 * geo.chunk_elems - 1) / geo.segment);
  unsigned char* stage_w = stage + int64_t(warp) * kStages * geo.n_chunk * kChunkBytes;  // this warp's pipeline

  const int phases = Epi::phases(args);
  for (int s = 0; s < phases; ++s) {
    const T* v_prev = ring_slot(args.ring, geo, s & 1);
    T* v_next = ring_slot(args.ring, geo, (s + 1) & 1);
    for (int pass = 0; pass < geo.passes; ++pass) {
      const int col0 = pass * geo.n_chunk;
      const int cols = min(geo.n_chunk, geo.batch - col0);
      const int nt_n = (cols + 7) / 8;
      typename Epi::Prefetch pre[kEpilogueElems];
      Epi::prefetch(args, geo, s, col0, cols, pre);  // global loads in flight while we wait
      if (has_k) {
        if (pass == 0) warp_wait_producers(args.flags, p_first, p_last, unsigned(s + 1));
        A acc[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = A(0);
        warp_product<Mma>(acc, w_s, stage_w, v_prev, geo, col0, nt_n, kc0, kc1, lane);
        store_partials(partials, acc, geo, warp, geo.rows_padded / 16, nt_n, lane);
      }
      __syncthreads();
      Epi::apply(args, geo, s, col0, cols, pre, partials, smem, v_next);
      __syncthreads();  // partials, stage and state are reused by the next pass / step
    }
    if (threadIdx.x == 0 && s + 1 < phases) st_release_gpu(args.flags + blockIdx.x, unsigned(s + 2));
  }
  Epi::finish(args, geo, smem);
}

template <typename Epi, typename Mma>
cudaError_t launch_recurrence(const typename Epi::Args& args, const Geometry& geo, cudaStream_t stream) {
  auto kernel = persistent_recurrence_kernel<Epi, Mma>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(geo.smem_bytes));
  if (err != cudaSuccess) return err;
  int device = 0, sms = 0, per_sm = 0;
  if ((err = cudaGetDevice(&device)) != cudaSuccess) return err;
  if ((err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) return err;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, size_t(geo.smem_bytes));
  if (err != cudaSuccess) return err;
  if (per_sm * sms < geo.ctas) return cudaErrorCooperativeLaunchTooLarge;
  typename Epi::Args a = args;
  Geometry g = geo;
  void* params[] = {&a, &g};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(geo.ctas), dim3(kThreads), params,
                                     size_t(geo.smem_bytes), stream);
}

// The engine that runs a storage type in a math mode (MathMode matters for float only).
template <typename T, MathMode kMode>
struct MmaFor;
template <MathMode kMode>
struct MmaFor<__nv_bfloat16, kMode> {
  using type = Bf16Mma;
};
template <MathMode kMode>
struct MmaFor<__half, kMode> {
  using type = F16Mma;
};
template <>
struct MmaFor<float, MathMode::kTensorCore> {
  using type = Tf32Mma;
};
template <>
struct MmaFor<float, MathMode::kFma> {
  using type = FmaMma<float>;
};
template <MathMode kMode>
struct MmaFor<double, kMode> {
  using type = FmaMma<double>;
};

template <template <typename, typename> class Epi, typename Cell, typename T>
cudaError_t launch_in_mode(const typename Epi<Cell, typename MmaFor<T, MathMode::kFma>::type>::Args& args,
                           const Geometry& geo, MathMode mode, cudaStream_t stream) {
  if (mode == MathMode::kTensorCore) {
    using M = typename MmaFor<T, MathMode::kTensorCore>::type;
    return launch_recurrence<Epi<Cell, M>, M>(args, geo, stream);
  }
  using M = typename MmaFor<T, MathMode::kFma>::type;
  return launch_recurrence<Epi<Cell, M>, M>(args, geo, stream);
}

template <typename Cell, typename T>
cudaError_t launch_persistent_forward(const ForwardArgs<T>& args, const Geometry& geo, MathMode mode,
                                      cudaStream_t stream) {
  return launch_in_mode<ForwardEpilogue, Cell, T>(args, geo, mode, stream);
}

template <typename Cell, typename T>
cudaError_t launch_persistent_backward(const BackwardArgs<T>& args, const Geometry& geo, MathMode mode,
                                       cudaStream_t stream) {
  return launch_in_mode<BackwardEpilogue, Cell, T>(args, geo, mode, stream);
}

// Explicit instantiations of one cell for every storage type.
#define RNNF_PERSISTENT_INSTANTIATE(CELL)                                                                          \
  template cudaError_t launch_persistent_forward<CELL, __nv_bfloat16>(const ForwardArgs<__nv_bfloat16>&,           \
                                                                      const Geometry&, MathMode, cudaStream_t);    \
  template cudaError_t launch_persistent_forward<CELL, __half>(const ForwardArgs<__half>&, const Geometry&,        \
                                                               MathMode, cudaStream_t);                            \
  template cudaError_t launch_persistent_forward<CELL, float>(const ForwardArgs<float>&, const Geometry&, MathMode, \
                                                              cudaStream_t);                                       \
  template cudaError_t launch_persistent_forward<CELL, double>(const ForwardArgs<double>&, const Geometry&,        \
                                                               MathMode, cudaStream_t);                            \
  template cudaError_t launch_persistent_backward<CELL, __nv_bfloat16>(const BackwardArgs<__nv_bfloat16>&,         \
                                                                       const Geometry&, MathMode, cudaStream_t);   \
  template cudaError_t launch_persistent_backward<CELL, __half>(const BackwardArgs<__half>&, const Geometry&,      \
                                                                MathMode, cudaStream_t);                           \
  template cudaError_t launch_persistent_backward<CELL, float>(const BackwardArgs<float>&, const Geometry&,        \
                                                               MathMode, cudaStream_t);                            \
  template cudaError_t launch_persistent_backward<CELL, double>(const BackwardArgs<double>&, const Geometry&,      \
                                                                MathMode, cudaStream_t);

}  // namespace persistent
}  // namespace rnnfused
