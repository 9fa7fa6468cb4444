// The per-warp matrix engine of the persistent kernels: acc[m16 tile][n8 tile] += W_slice · v_stageᵀ over one
// 64-byte chunk of K, both operands in shared memory, row-major with K contiguous: the weights rows `w_stride` bytes
// apart (the whole K), the staged chunk of v rows 64 bytes apart.
//
// Every policy leaves its accumulators in the m16n8 "C fragment" layout of mma.sync (lane = 4*g + q holds rows
// g and g+8, columns 2q and 2q+1 of each tile), so storing the partial sums is shared code.
//
// Tensor-core policies and the K permutation: a lane loads 16 contiguous bytes of a row (K elements
// [chunk*64 + 16q, +16) in bytes) with one ld.shared.v4. The four 32-bit words are the fragments of two
// consecutive mma k-tiles: words .x/.y feed k-tile 0, .z/.w k-tile 1. That assigns physical K positions to the mma's
// logical ones in a fixed permutation, the same for A (weights) and B (vector), so the dot product is unchanged
// (a sum over K in another order) and no data is ever shuffled. For bf16/fp16 (m16n8k16): logical k 2q+e ↔
// physical 8q+e, 2q+8+e ↔ 8q+2+e (tile 0) and 8q+4+e, 8q+6+e (tile 1). For tf32 (m16n8k8): logical q ↔ 4q,
// q+4 ↔ 4q+1 (tile 0), and 4q+2, 4q+3 (tile 1).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "persistent_plan.cuh"

namespace rnnfused {
namespace persistent {

// ------------------------------------------------------------------------------------------ storage conversions
// Explicit conversions only: PyTorch builds CUDA code with __CUDA_NO_HALF_CONVERSIONS__ and friends.
template <typename T>
struct StorageTraits;

template <>
struct StorageTraits<__nv_bfloat16> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
  __device__ __forceinline__ static __nv_bfloat16 zero() { return __float2bfloat16_rn(0.0f); }
};
template <>
struct StorageTraits<__half> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(__half v) { return __half2float(v); }
  __device__ __forceinline__ static __half from_acc(float v) { return __float2half_rn(v); }
  __device__ __forceinline__ static __half zero() { return __float2half_rn(0.0f); }
};
template <>
struct StorageTraits<float> {
  using Acc = float;
  __device__ __forceinline__ static float to_acc(float v) { return v; }
  __device__ __forceinline__ static float from_acc(float v) { return v; }
  __device__ __forceinline__ static float zero() { return 0.0f; }
};
template <>
struct StorageTraits<double> {
  using Acc = double;
  __device__ __forceinline__ static double to_acc(double v) { return v; }
  __device__ __forceinline__ static double from_acc(double v) { return v; }
  __device__ __forceinline__ static double zero() { return 0.0; }
};

__device__ __forceinline__ uint4 lds128(const unsigned char* p) {
  return *reinterpret_cast<const uint4*>(p);
}

// ------------------------------------------------------------------------------------------ mma.sync wrappers
// bf16 (S = __nv_bfloat16) or fp16 (S = __half) m16n8k16, fp32 accumulate.
template <typename S>
struct Mma16816Op {
  using Storage = S;
  __device__ __forceinline__ static void mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                             unsigned b0, unsigned b1) {
    if constexpr (std::is_same<S, __half>::value) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
  }
  __device__ __forceinline__ static uint4 operand(uint4 v) { return v; }
  __device__ __forceinline__ static Storage operand(Storage v) { return v; }
};
using Bf16Op = Mma16816Op<__nv_bfloat16>;
using F16Op = Mma16816Op<__half>;

__device__ __forceinline__ unsigned to_tf32(unsigned f32_bits) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(f32_bits)));
  return r;
}

struct Tf32Op {
  using Storage = float;
  __device__ __forceinline__ static void mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                             unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
  // Round-to-nearest into tf32 once, where the operand is produced (weights when loaded, v when written), not in
  // the hot loop: the tensor core would otherwise truncate.
  __device__ __forceinline__ static uint4 operand(uint4 v) {
    return make_uint4(to_tf32(v.x), to_tf32(v.y), to_tf32(v.z), to_tf32(v.w));
  }
  __device__ __forceinline__ static float operand(float v) { return __uint_as_float(to_tf32(__float_as_uint(v))); }
};

// ------------------------------------------------------------------------------------------------- policies
// Policy interface:
//   Storage, Acc                     element types
//   kMaxNTiles                       accumulator bound on n8 tiles (the plan's max_ntiles)
//   kTensorCore                      a fast engine (all synchronisation variants) or an exactness one (baseline)
//   chunk<MT, NT>(acc, w, v, ...)    acc[mt][nt] += W[mt*16.., chunk] · V[nt*8.., chunk]ᵀ
//   operand(uint4) / operand(T)      the value as the engine consumes it (tf32 rounding)
template <typename Op>
struct TensorCoreMma {
  using Storage = typename Op::Storage;
  using Acc = float;
  static constexpr int kMaxNTiles = 4;
  static constexpr bool kTensorCore = true;  // every synchronisation variant is compiled for it

  __device__ __forceinline__ static uint4 operand(uint4 v) { return Op::operand(v); }
  __device__ __forceinline__ static Storage operand(Storage v) { return Op::operand(v); }

  // w: this chunk of the weight rows (`rows` of them are real, the rest of the m16 tiles read as zero); v: the
  // staged chunk (n8 tiles, all rows present). mt_n/nt_n: tiles in use (warp-uniform).
  template <int MT, int NT>
  __device__ __forceinline__ static void chunk(float (&acc)[MT][NT][4], const unsigned char* w, int w_stride,
                                               const unsigned char* v, int rows, int mt_n, int nt_n, int lane) {
    const int g = lane >> 2, q = lane & 3;
    const int col = q * 16;
    uint4 b[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      b[nt] = nt < nt_n ? lds128(v + (nt * 8 + g) * kChunkBytes + col) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      if (mt < mt_n) {
        const int r_lo = mt * 16 + g, r_hi = r_lo + 8;
        const uint4 lo = r_lo < rows ? lds128(w + r_lo * w_stride + col) : make_uint4(0, 0, 0, 0);
        const uint4 hi = r_hi < rows ? lds128(w + r_hi * w_stride + col) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          if (nt < nt_n) {
            Op::mma(acc[mt][nt], lo.x, hi.x, lo.y, hi.y, b[nt].x, b[nt].y);
            Op::mma(acc[mt][nt], lo.z, hi.z, lo.w, hi.w, b[nt].z, b[nt].w);
          }
        }
      }
    }
  }
};

// Plain FMA in the storage precision (float64, or float32 without TF32): the same tile contract, no tensor cores.
// It exists for exactness (float64 gradcheck on the persistent path, float32 parity at FMA accuracy); it is not
// the fast path.
template <typename S>
struct FmaMma {
  using Storage = S;
  using Acc = S;
  static constexpr int kMaxNTiles = sizeof(S) == 8 ? 2 : 4;  // fp64 accumulators cost two registers each
  static constexpr bool kTensorCore = false;  // the baseline variant only
  static constexpr int kChunkElems = 64 / int(sizeof(S));

  __device__ __forceinline__ static uint4 operand(uint4 v) { return v; }
  __device__ __forceinline__ static S operand(S v) { return v; }

  template <int MT, int NT>
  __device__ __forceinline__ static void chunk(S (&acc)[MT][NT][4], const unsigned char* w, int w_stride,
                                               const unsigned char* v, int rows, int mt_n, int nt_n, int lane) {
    const int g = lane >> 2, q = lane & 3;
#pragma unroll 2
    for (int k = 0; k < kChunkElems; ++k) {
      const int off = k * int(sizeof(S));
      S b0[NT], b1[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        b0[nt] = nt < nt_n ? *reinterpret_cast<const S*>(v + (nt * 8 + 2 * q) * kChunkBytes + off) : S(0);
        b1[nt] = nt < nt_n ? *reinterpret_cast<const S*>(v + (nt * 8 + 2 * q + 1) * kChunkBytes + off) : S(0);
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if (mt < mt_n) {
          const int r_lo = mt * 16 + g, r_hi = r_lo + 8;
          const S a0 = r_lo < rows ? *reinterpret_cast<const S*>(w + r_lo * w_stride + off) : S(0);
          const S a1 = r_hi < rows ? *reinterpret_cast<const S*>(w + r_hi * w_stride + off) : S(0);
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            acc[mt][nt][0] = fma(a0, b0[nt], acc[mt][nt][0]);
            acc[mt][nt][1] = fma(a0, b1[nt], acc[mt][nt][1]);
            acc[mt][nt][2] = fma(a1, b0[nt], acc[mt][nt][2]);
            acc[mt][nt][3] = fma(a1, b1[nt], acc[mt][nt][3]);
          }
        }
      }
    }
  }
};

using Bf16Mma = TensorCoreMma<Bf16Op>;
using F16Mma = TensorCoreMma<F16Op>;
using Tf32Mma = TensorCoreMma<Tf32Op>;

}  // namespace persistent
}  // namespace rnnfused
