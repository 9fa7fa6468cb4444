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
// The epilogue policies (persistent_epilogue.cuh) own everything cell-specific; the Variant template parameter
// (persistent_tuning.h) picks the synchronisation: where the flag is released (store_first), how flags are laid
// out (padded) and polled (poll_warp), or no flags at all (ll: step tags inside the data words).
// A waiter that exceeds the spin limit abandons the launch cleanly (persistent_sync.cuh Watchdog): every CTA leaves
// at its next barrier, the host reads the StallRecord.
#pragma once

#include <cstdint>
#include <type_traits>

#include "launch_status.h"
#include "persistent_epilogue.cuh"
#include "persistent_exchange.cuh"
#include "persistent_launch.cuh"
#include "persistent_mma.cuh"
#include "persistent_plan.cuh"
#include "persistent_sync.cuh"

namespace rnnfused {
namespace persistent {

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

template <typename Epi, typename Mma, Variant V>
__global__ void __launch_bounds__(kThreads, 1) persistent_recurrence_kernel(const typename Epi::Args args,
                                                                            const Geometry geo) {
  using T = typename Mma::Storage;
  using A = typename Mma::Acc;
  constexpr int MT = kMaxMTiles, NT = Mma::kMaxNTiles;
  constexpr bool kLL = V == Variant::kLL;
  constexpr bool kPerWarpWait = V == Variant::kBaseline || V == Variant::kStoreFirst || V == Variant::kPadded;
  constexpr bool kDefer = V == Variant::kStoreFirst;  // outputs after the release
  constexpr int kFlagStride = V == Variant::kPadded ? kFlagLineWords : 1;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* w_s = smem + geo.off_weights;
  unsigned char* stage = smem + geo.off_stage;
  A* partials = reinterpret_cast<A*>(smem + geo.off_partials);
  T* xch = reinterpret_cast<T*>(smem + geo.off_xch);  // LL only: [n_chunk][seg_stride]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int phases = Epi::phases(args);
  const Watchdog wd{args.abort_word, args.stall, args.spin_limit, geo.ctas, phases, geo.dir, geo.variant};
  unsigned* my_flag = args.flags + int64_t(blockIdx.x) * kFlagStride;
  // Tests inject a stall: CTA 0 stops publishing from phase debug_stall_phase on (phase p = flag value / tag p+1).
  const auto publishes = [&](int phase) {
    return args.debug_stall_phase < 0 || blockIdx.x != 0 || phase < args.debug_stall_phase;
  };
  const auto v0 = [&](int i, int b) { return Epi::v0(args, geo, i, b); };

  load_weights<Mma>(args.w_packed, w_s, geo);
  Epi::init(args, geo, smem);
  if constexpr (kLL) {
    init_ll(args.ring, xch, geo, v0, publishes(0));
  } else {
    init_ring(args.ring, geo, v0);
    __syncthreads();
    if (threadIdx.x == 0 && publishes(0)) st_release_gpu(my_flag, 1u);
  }

  // This warp's K range (chunks) and the CTAs that produce it.
  const bool has_k = warp < geo.active_warps;
  const int kc0 = warp * geo.chunks / geo.active_warps;
  const int kc1 = (warp + 1) * geo.chunks / geo.active_warps;
  const int p_first = kc0 * geo.chunk_elems / geo.seg_stride;
  const int p_last = min(geo.ctas - 1, (kc1 * geo.chunk_elems - 1) / geo.seg_stride);
  unsigned char* stage_w = stage + int64_t(warp) * geo.stage_warp_bytes;  // this warp's pipeline

  for (int s = 0; s < phases; ++s) {
    const unsigned ready = unsigned(s + 1);  // flag value / LL tag of a complete v_{s-1}
    for (int pass = 0; pass < geo.passes; ++pass) {
      const int col0 = pass * geo.n_chunk;
      const int cols = min(geo.n_chunk, geo.batch - col0);
      const int nt_n = (cols + 7) / 8;
      typename Epi::Prefetch pre[kEpilogueElems];
      Epi::prefetch(args, geo, s, col0, cols, pre);  // global loads in flight while we wait
      bool give_up = false;
      if constexpr (V == Variant::kPollWarp) {
        if (pass == 0) {
          if (warp == 0) give_up = !warp_wait_all_relaxed(args.flags, geo.ctas, ready, wd, s);
          if (__syncthreads_or(give_up)) return;
        }
      }
      if (has_k) {
        if constexpr (kPerWarpWait) {
          if (pass == 0) give_up = !warp_wait_producers<kFlagStride>(args.flags, p_first, p_last, ready, wd, s);
        }
        if (!give_up) {
          A acc[MT][NT][4];
#pragma unroll
          for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
              for (int e = 0; e < 4; ++e) acc[mt][nt][e] = A(0);
          if constexpr (kLL) {
            give_up = !warp_product_ll<Mma>(acc, w_s, stage_w, ll_slot(args.ring, geo, s & 1), geo, col0, nt_n, kc0,
                                            kc1, lane, ready, wd, s);
          } else {
            warp_product<Mma>(acc, w_s, stage_w, ring_slot(args.ring, geo, s & 1), geo, col0, nt_n, kc0, kc1, lane);
          }
          if (!give_up) store_partials(partials, acc, geo, warp, geo.rows_padded / 16, nt_n, lane);
        }
      }
      if (__syncthreads_or(give_up)) return;  // the launch is abandoned: every thread of the CTA leaves here
      const VecOut<T> v_out =
          kLL ? VecOut<T>{xch, geo.seg_stride, col0}
              : VecOut<T>{ring_slot(args.ring, geo, (s + 1) & 1) + int64_t(blockIdx.x) * geo.seg_stride,
                          geo.k_padded, 0};
      typename Epi::Result res[kEpilogueElems];
      Epi::template apply<kDefer>(args, geo, s, col0, cols, pre, partials, smem, v_out, res);
      __syncthreads();  // partials, stage and state are reused by the next pass / step; v_s's slice is complete
      const bool publish = s + 1 < phases && publishes(s + 1);
      if constexpr (kLL) {
        if (publish) publish_ll(ll_slot(args.ring, geo, (s + 1) & 1), xch, geo, col0, cols, unsigned(s + 2));
      }
      if constexpr (kDefer) {
        if (pass == geo.passes - 1 && threadIdx.x == 0 && publish) st_release_gpu(my_flag, unsigned(s + 2));
        Epi::store(args, geo, s, col0, cols, res);
      }
    }
    if constexpr (!kLL && !kDefer) {
      if (threadIdx.x == 0 && s + 1 < phases && publishes(s + 1)) st_release_gpu(my_flag, unsigned(s + 2));
    }
  }
  Epi::finish(args, geo, smem);
}

template <typename Epi, typename Mma, Variant V>
cudaError_t launch_recurrence(const typename Epi::Args& args, const Geometry& geo, cudaStream_t stream) {
  typename Epi::Args a = args;
  Geometry g = geo;
  void* params[] = {&a, &g};
  return cuda::launch_cooperative(reinterpret_cast<const void*>(persistent_recurrence_kernel<Epi, Mma, V>),
                                  geo.ctas, kThreads, size_t(geo.smem_bytes), params, stream);
}

// RNNFUSED_PERSISTENT_VARIANTS=0 compiles only the baseline variant (the others then fail with
// cudaErrorInvalidValue): for compile checks of further architectures (tests/test_persistent_compile.py), not for
// builds that run.
#ifndef RNNFUSED_PERSISTENT_VARIANTS
#define RNNFUSED_PERSISTENT_VARIANTS 1
#endif

// The variant geo.variant of the kernel; the FMA engines (tests, not speed) have only the baseline.
template <typename Epi, typename Mma>
cudaError_t launch_variant(const typename Epi::Args& args, const Geometry& geo, cudaStream_t stream) {
  if constexpr (!Mma::kTensorCore || RNNFUSED_PERSISTENT_VARIANTS == 0) {
    if (geo.variant != int(Variant::kBaseline)) return cudaErrorInvalidValue;
    return launch_recurrence<Epi, Mma, Variant::kBaseline>(args, geo, stream);
  } else {
    switch (Variant(geo.variant)) {
      case Variant::kBaseline:
        return launch_recurrence<Epi, Mma, Variant::kBaseline>(args, geo, stream);
      case Variant::kStoreFirst:
        return launch_recurrence<Epi, Mma, Variant::kStoreFirst>(args, geo, stream);
      case Variant::kPadded:
        return launch_recurrence<Epi, Mma, Variant::kPadded>(args, geo, stream);
      case Variant::kPollWarp:
        return launch_recurrence<Epi, Mma, Variant::kPollWarp>(args, geo, stream);
      case Variant::kLL:
        return launch_recurrence<Epi, Mma, Variant::kLL>(args, geo, stream);
    }
    return cudaErrorInvalidValue;
  }
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
    return launch_variant<Epi<Cell, M>, M>(args, geo, stream);
  }
  using M = typename MmaFor<T, MathMode::kFma>::type;
  return launch_variant<Epi<Cell, M>, M>(args, geo, stream);
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

// The launch function of one cell, direction (forward|backward) and element type. The persistent_{fwd,bwd}_<type>.cu
// files instantiate it for every cell of csrc/common/cells.h (one translation unit per direction and type keeps
// parallel builds short; a new cell adds no file).
#define RNNF_PERSISTENT_INSTANTIATE(DIR, T, CELL) \
  template cudaError_t launch_persistent_##DIR<CELL, T>(const DIR##_args_t<T>&, const Geometry&, MathMode, cudaStream_t);
template <typename T>
using forward_args_t = ForwardArgs<T>;
template <typename T>
using backward_args_t = BackwardArgs<T>;

}  // namespace persistent
}  // namespace rnnfused
