// The fused CPU kernels compiled for AVX-512F (16 floats / 8 doubles per vector, 32 registers), selected at run time
// when the CPU (and the OS, for the zmm state) supports AVX-512F. See isa_avx2.cpp for how the target is confined.
#include <cstdint>

#include "../../common/cells.h"
#include "kernel_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")

namespace rnnfused {
namespace cpu {
namespace fused {
namespace avx512 {

#define RNNF_KI inline __attribute__((always_inline))
constexpr int kRegisters = 32;

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  using reg = __m512;
  static constexpr int64_t kWidth = 16;
  static RNNF_KI reg zero() { return _mm512_setzero_ps(); }
  static RNNF_KI reg set1(float x) { return _mm512_set1_ps(x); }
  static RNNF_KI reg load(const float* p) { return _mm512_loadu_ps(p); }
  static RNNF_KI void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
};

template <>
struct Vec<double> {
  using reg = __m512d;
  static constexpr int64_t kWidth = 8;
  static RNNF_KI reg zero() { return _mm512_setzero_pd(); }
  static RNNF_KI reg set1(double x) { return _mm512_set1_pd(x); }
  static RNNF_KI reg load(const double* p) { return _mm512_loadu_pd(p); }
  static RNNF_KI void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
};

#include "kernel.inc"

#undef RNNF_KI

}  // namespace avx512
}  // namespace fused
}  // namespace cpu
}  // namespace rnnfused

#pragma GCC pop_options

#else

#include "stub_isa.inc"
RNNF_FUSED_STUB_ISA(avx512)

#endif
