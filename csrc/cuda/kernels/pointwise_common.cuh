// What the forward and backward pointwise kernels share: dtype conversions, packed (vector) loads and stores,
// the launch geometry and the explicit-instantiation list. Torch-free (plain `nvcc -c` compiles it).
//
// Thread layout of both kernels: a 2-D grid; blockIdx.y (strided by gridDim.y) picks a batch row b, and each
// thread of the x dimension owns V consecutive hidden units j .. j+V-1 of that row, so for every gate block the
// threads of a warp touch consecutive addresses (coalesced), V values at a time (one 4-16 byte access) when the
// sizes and pointers allow it (V = 1 otherwise). All index math is 64-bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "../../common/cells.h"
#include "../../common/step.h"

namespace rnnfused {
namespace cuda {

// ------------------------------------------------------------------------------------------ dtype conversions
// Explicit intrinsics: torch builds define __CUDA_NO_HALF_CONVERSIONS__ / __CUDA_NO_BFLOAT16_CONVERSIONS__, so
// the implicit operators of __half / __nv_bfloat16 are not available there.
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }

template <typename T>
struct FromAcc;
template <>
struct FromAcc<__half> {
  __device__ __forceinline__ static __half of(float x) { return __float2half_rn(x); }
};
template <>
struct FromAcc<__nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 of(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct FromAcc<float> {
  __device__ __forceinline__ static float of(float x) { return x; }
};
template <>
struct FromAcc<double> {
  __device__ __forceinline__ static double of(double x) { return x; }
};

// Rounds an arithmetic-type value to the storage type T.
template <typename T, typename A>
__device__ __forceinline__ T from_acc(A x) {
  return FromAcc<T>::of(x);
}

// ------------------------------------------------------------------------------------------ packed accesses
// V consecutive values, aligned so that one load/store instruction moves them all.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ Pack<T, V> load(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <int V, typename T>
__device__ __forceinline__ void store(T* p, const Pack<T, V>& x) {
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}

template <int V, typename T>
__device__ __forceinline__ Pack<T, V> zeros() {
  Pack<T, V> z;
#pragma unroll
  for (int v = 0; v < V; ++v) z.v[v] = from_acc<T>(0.0f);
  return z;
}

// Units per thread when packing is possible: 16-byte accesses of the arithmetic type C (so 2 doubles, 4 floats,
// 4 halves/bfloat16 with their float cell state).
template <typename C>
constexpr int pack_width() {
  return static_cast<int>(16 / sizeof(C));
}

// Packed access is possible when every row offset (a multiple of H) and every base pointer is a multiple of V
// elements (and their byte alignment). nullptr counts as aligned.
template <typename P>
inline bool aligned(const P* p, int V) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(P) * static_cast<uintptr_t>(V)) == 0;
}

__device__ __forceinline__ bool row_active(const int64_t* lengths, int64_t t, int64_t b) {
  return lengths == nullptr || t < lengths[b];
}

// ------------------------------------------------------------------------------------------ launch geometry
constexpr int kMaxThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct Geometry {
  dim3 grid, block;
};

// Threads in x cover `lanes` (= H / V) per row; blockIdx.y strides over the B rows.
inline Geometry geometry(int64_t lanes, int64_t batch) {
  int64_t threads = ((lanes + 31) / 32) * 32;
  threads = threads < kMaxThreads ? threads : kMaxThreads;
  const int64_t blocks_x = (lanes + threads - 1) / threads;
  const int64_t blocks_y = batch < kMaxGridY ? batch : kMaxGridY;
  Geometry g;
  g.block = dim3(static_cast<unsigned>(threads));
  g.grid = dim3(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y));
  return g;
}

// Sizes the kernels can index: positive, and H / V lanes within the x grid limit (2^31 - 1 blocks).
inline bool valid_sizes(int64_t batch, int64_t hidden) {
  return batch >= 0 && hidden > 0 && hidden / kMaxThreads < (int64_t(1) << 31) - 1;
}

}  // namespace cuda
}  // namespace rnnfused

// X(Cell, T, C) for every storage type T (with its arithmetic type C) the kernels are instantiated for; the .cu files
// apply it to every cell of the registry (RNNF_FOR_EACH_CELL, csrc/common/cells.h).
#define RNNF_CUDA_FOR_EACH_TYPE(X, Cell) \
  X(Cell, double, double)                \
  X(Cell, float, float)                  \
  X(Cell, __half, float)                 \
  X(Cell, __nv_bfloat16, float)
