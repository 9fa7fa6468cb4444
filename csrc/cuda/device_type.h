// The CUDA element type of an ATen element type: the torch-free kernels are instantiated over __half and
// __nv_bfloat16, which share their bits with c10::Half and c10::BFloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace rnnfused {
namespace cuda {

template <typename T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<c10::Half> {
  using type = __half;
};
template <>
struct DeviceType<c10::BFloat16> {
  using type = __nv_bfloat16;
};
template <typename T>
using device_type_t = typename DeviceType<T>::type;

static_assert(sizeof(__half) == sizeof(c10::Half) && sizeof(__nv_bfloat16) == sizeof(c10::BFloat16),
              "the kernels reinterpret ATen 16-bit storage as CUDA's types");

}  // namespace cuda
}  // namespace rnnfused
