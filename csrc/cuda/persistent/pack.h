// The weight layout of the persistent kernels: W_hh rearranged into the per-CTA slices each CTA keeps resident in
// shared memory. Plain ATen (no CUDA): built into every rnnfused._C, so the CPU tests check the layout contract.
#pragma once

#include <ATen/ATen.h>

#include "../kernels/persistent_plan.cuh"

namespace rnnfused {
namespace persistent {

// W_hh [G*H, H] → forward [ctas, G*units, k_padded] (row g*units + u of CTA c = W_hh row g*H + c*units + u), backward
// [ctas, units, k_padded] (row u of CTA c = W_hh column c*units + u). K follows the exchange vector's producer-major
// order: entry c'*seg_stride + i is entry i of CTA c''s segment (forward: unit c'*units + i; backward: gate
// i / units, unit c'*units + i % units). Zero where units, segment padding (seg_stride > segment) or the K tail are
// padding. Uses geo.dir, ctas, units, seg_stride (0: the segment), k_padded, chunk_elems.
at::Tensor pack_weights(const at::Tensor& w_hh, int64_t gates, const Geometry& geo);

}  // namespace persistent
}  // namespace rnnfused
