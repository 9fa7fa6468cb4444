// Float exp and tanh for the CPU loops, written so that GCC/Clang vectorize a loop that calls them (glibc's expf and
// tanhf are scalar calls of ~20 ns each and would dominate the pointwise pass). Cephes' single-precision
// algorithms: exp within ~1 ulp, tanh within ~2 ulp over the whole range. NaN propagates (no fmin/fmax clamps).
#pragma once

#include <cstdint>
#include <cstring>

namespace rnnfused {
namespace host_math {

#if defined(__GNUC__)
#define RNNF_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define RNNF_ALWAYS_INLINE inline
#endif

RNNF_ALWAYS_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

RNNF_ALWAYS_INLINE int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

RNNF_ALWAYS_INLINE float exp(float x) {
  // Clamp with comparisons (false for NaN, so NaN passes through to the polynomial and out).
  x = x > 88.3762626647949f ? 88.3762626647949f : x;
  x = x < -87.3365447505531f ? -87.3365447505531f : x;
  // n = round(x / ln2) by the 1.5·2^23 trick: integer in the low mantissa bits, exact for |n| < 2^22.
  const float magic = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + magic;
  const float n = shifted - magic;
  const int32_t ni = float_to_bits(shifted) - float_to_bits(magic);
  // r = x - n·ln2 in two parts (Cody–Waite), then exp(r) by Cephes' minimax polynomial on [-ln2/2, ln2/2].
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r2 + r + 1.0f;
  // Scale by 2^n in two halves so that n down to -126 (and up to 127) stays representable.
  const int32_t n1 = ni >> 1;
  const int32_t n2 = ni - n1;
  return er * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
}

RNNF_ALWAYS_INLINE float tanh(float x) {
  const float ax = x < 0.0f ? -x : x;
  // |x| < 0.625: odd polynomial (no cancellation near 0).
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  // |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), sign restored. exp saturates at +inf-free clamp, giving exactly 1.
  const float large_abs = 1.0f - 2.0f / (exp(2.0f * ax) + 1.0f);
  const float large = x < 0.0f ? -large_abs : large_abs;
  return ax < 0.625f ? small : large;
}

}  // namespace host_math
}  // namespace rnnfused
