// The fused CPU kernels compiled for AVX2 + FMA (8 floats / 4 doubles per vector, 16 registers). Only this file's
// own functions get the target attribute (a `#pragma GCC target` region after every include), so the library stays
// runnable on any x86-64; fused_runner.cpp calls these only when the CPU reports AVX2 and FMA.
#include <cstdint>

#include "../../common/cells.h"
#include "kernel_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace rnnfused {
namespace cpu {
namespace fused {
namespace avx2 {

#define RNNF_KI inline __attribute__((always_inline))
constexpr int kRegisters = 16;

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using reg = __m256;
  static constexpr int64_t kWidth = 8;
  static RNNF_KI reg zero() { return _mm256_setzero_ps(); }
  static RNNF_KI reg set1(float x) { return _mm256_set1_ps(x); }
  static RNNF_KI reg load(const float* p) { return _mm256_loadu_ps(p); }
  static RNNF_KI void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
};

template <>
struct Vec<double> {
  using reg = __m256d;
  static constexpr int64_t kWidth = 4;
  static RNNF_KI reg zero() { return _mm256_setzero_pd(); }
  static RNNF_KI reg set1(double x) { return _mm256_set1_pd(x); }
  static RNNF_KI reg load(const double* p) { return _mm256_loadu_pd(p); }
  static RNNF_KI void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
};

#include "kernel.inc"

#undef RNNF_KI

}  // namespace avx2
}  // namespace fused
}  // namespace cpu
}  // namespace rnnfused

#pragma GCC pop_options

#else  // not x86-64 GCC/Clang: never selected (fused_runner.cpp checks compiled())

#include "stub_isa.inc"
RNNF_FUSED_STUB_ISA(avx2)

#endif
