// The fused CPU kernels for any CPU: 16-byte GCC/Clang vectors (4 floats / 2 doubles; SSE2 on baseline x86-64,
// NEON on arm64), multiply then add (no FMA assumed). The fallback when neither AVX2+FMA nor AVX-512F is there.
#include <cstdint>

#include "../../common/cells.h"
#include "kernel_api.h"

namespace rnnfused {
namespace cpu {
namespace fused {
namespace portable {

#if defined(__GNUC__)
#define RNNF_KI inline __attribute__((always_inline))
#else
#define RNNF_KI inline
#endif
constexpr int kRegisters = 16;

#if defined(__GNUC__)
template <typename T, int64_t W>
struct GnuVec {
  typedef T reg __attribute__((vector_size(sizeof(T) * W)));
  static constexpr int64_t kWidth = W;
  static RNNF_KI reg zero() { return reg{} ; }
  static RNNF_KI reg set1(T x) { return reg{} + x; }
  static RNNF_KI reg load(const T* p) {
    reg v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static RNNF_KI void store(T* p, reg v) { __builtin_memcpy(p, &v, sizeof v); }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return a * b + c; }
};
template <typename T>
struct Vec : GnuVec<T, 16 / int64_t(sizeof(T))> {};
#else
template <typename T>
struct Vec {  // one lane: plain scalar code
  using reg = T;
  static constexpr int64_t kWidth = 1;
  static RNNF_KI reg zero() { return T(0); }
  static RNNF_KI reg set1(T x) { return x; }
  static RNNF_KI reg load(const T* p) { return *p; }
  static RNNF_KI void store(T* p, reg v) { *p = v; }
  static RNNF_KI reg fma(reg a, reg b, reg c) { return a * b + c; }
};
#endif

#include "kernel.inc"

#undef RNNF_KI

}  // namespace portable
}  // namespace fused
}  // namespace cpu
}  // namespace rnnfused
