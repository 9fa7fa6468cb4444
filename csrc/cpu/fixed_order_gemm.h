// GEMMs and column sums whose bits do not depend on the number of threads.
//
// BLAS called on a whole product splits the work by the thread count, and MKL's results then change in the last
// bits with the thread count (measured here: 3 or 4 threads differ from 1). These helpers split a product into
// pieces chosen from its shape alone, run each piece as one BLAS call on one thread (inside one parallel region,
// where BLAS is sequential), and combine the pieces in a fixed order: every element comes out of the same
// single-threaded calls whatever the thread count. The fused CPU path uses them for its big GEMMs, so the whole op
// is bitwise reproducible across thread counts.
#pragma once

#include <ATen/ATen.h>

#include <functional>

namespace rnnfused {
namespace cpu {

// bias [N] (or undefined) + a [M, K] · b [K, N] -> [M, N] contiguous; pieces = row blocks of a (M large, K and N
// moderate: the input projection, dX), or column blocks of b when M is too small for two row blocks. a and b may be
// transposed views.
// `out`: a contiguous [M, N] tensor to write into (e.g. a scratch buffer), or undefined for a new one.
at::Tensor fixed_order_mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias = at::Tensor(),
                          at::Tensor out = at::Tensor());

// aᵀ · b for a [K, M], b [K, N] -> [M, N] contiguous; pieces = blocks of output rows, each over all of K (K = T·B
// large, M and N moderate: the weight gradients Σ_t dgates_tᵀ x_t).
at::Tensor fixed_order_mm_tn(const at::Tensor& a, const at::Tensor& b);

// [N] column sums of x [M, N] (any strides).
at::Tensor fixed_order_column_sum(const at::Tensor& x);

// fn(r0, rows) over [0, M) in chunks of a fixed number of rows, each chunk on one thread: for element-wise ATen ops
// whose vectorized and scalar code paths round differently (tanh), so that no element's path depends on how the
// thread count splits the range.
void for_each_row_chunk(int64_t M, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace cpu
}  // namespace rnnfused
