// The `Pointwise` policy of the CUDA backend (see csrc/sequence/driver.h): one launch of the fused per-step kernel
// of csrc/cuda/kernels on the current CUDA stream, with the launch status checked.
//
// The driver hands ForwardStep/BackwardStep over ATen's element types; c10::Half and c10::BFloat16 have the same
// layout as CUDA's __half and __nv_bfloat16 (a 16-bit payload), so the kernels get the same pointers retyped.
#pragma once

#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cstring>
#include <type_traits>

#include "../common/step.h"
#include "device_type.h"
#include "kernels/pointwise.h"

namespace rnnfused {
namespace cuda {

// The same pointer bundle over the CUDA element type. ForwardStep/BackwardStep hold only sizes and pointers, and
// T and device_type_t<T> share a layout, so the bundles share one too: a byte copy carries every field (also fields
// added to step.h later).
template <template <typename, typename> class Step, typename T, typename C>
Step<device_type_t<T>, C> to_device_step(const Step<T, C>& s) {
  using DeviceStep = Step<device_type_t<T>, C>;
  static_assert(sizeof(device_type_t<T>) == sizeof(T) && alignof(device_type_t<T>) == alignof(T),
                "ATen and CUDA element types must share a layout");
  static_assert(sizeof(DeviceStep) == sizeof(Step<T, C>) && std::is_trivially_copyable<DeviceStep>::value &&
                    std::is_trivially_copyable<Step<T, C>>::value,
                "step bundles must be plain sizes and pointers");
  DeviceStep d;
  std::memcpy(static_cast<void*>(&d), static_cast<const void*>(&s), sizeof(d));
  return d;
}

struct CudaPointwise {
  template <typename Cell, typename T, typename C>
  static void forward(const ForwardStep<T, C>& s) {
    const cudaError_t err = cuda::forward_step<Cell>(to_device_step(s), c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "rnnfused: launching the CUDA forward pointwise kernel (step t=", s.t,
                ", batch=", s.batch, ", hidden=", s.hidden, ") failed: ", cudaGetErrorString(err));
  }

  template <typename Cell, typename T, typename C>
  static void backward(const BackwardStep<T, C>& s) {
    const cudaError_t err = cuda::backward_step<Cell>(to_device_step(s), c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "rnnfused: launching the CUDA backward pointwise kernel (step t=", s.t,
                ", batch=", s.batch, ", hidden=", s.hidden, ") failed: ", cudaGetErrorString(err));
  }
};

}  // namespace cuda
}  // namespace rnnfused
