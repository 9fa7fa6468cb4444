// Column sums and element-wise passes whose bits do not depend on the number of threads.
//
// ATen called on a whole tensor splits the work by the thread count, and reductions (and element-wise ops whose
// vectorized and scalar code paths round differently) then change in the last bits with it. These helpers split the
// work into pieces chosen from its shape alone, each run on one thread, so the fused CPU path stays bitwise
// reproducible across thread counts. (Its GEMMs are the kernels' own: fused/kernel.inc, matmul.)
#pragma once

#include <ATen/ATen.h>

#include <functional>

namespace rnnfused {
namespace cpu {

// [N] column sums of x [M, N] (any strides).
at::Tensor fixed_order_column_sum(const at::Tensor& x);

// fn(r0, rows) over [0, M) in chunks of a fixed number of rows, each chunk on one thread: for element-wise ATen ops
// whose vectorized and scalar code paths round differently (tanh), so that no element's path depends on how the
// thread count splits the range.
void for_each_row_chunk(int64_t M, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace rnnfused
