// The torch side of the fused CPU path: allocations, the big GEMMs after the reverse sweep (dX, dW_ih, dW_hh, dW_hr
// in the kernels' matmul; the bias gradients), and one team of threads per call that runs the whole recurrence, the
// input projection before it included, in the ISA-specific kernels (csrc/cpu/fused/).
//
// Threads: the team is one at::parallel_for over the logical workers (torch's OpenMP pool, at::get_num_threads()),
// started once per call, not per step. Inside an existing parallel region, with one thread, or when the work per
// step is too small to share, it runs inline on the calling thread. Results are bitwise identical for any team
// size (each output element's reduction order is fixed; see kernel.inc).
#pragma once

#include "../sequence/driver.h"

namespace rnnfused {
namespace cpu {

// Same results and saved-tensor formats as sequence_forward / sequence_backward (driver.h); float32 and float64.
template <typename Cell>
ForwardResult fused_forward(const LayerArgs& a);

template <typename Cell>
BackwardResult fused_backward(const LayerArgs& a, const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                              const at::Tensor& grad_c_n, const ForwardResult& fwd);

// Logical workers of the team for a GEMM of `batch` rows, `outputs` columns and depth `depth` per step, whose output
// units come in `panels` panels (one worker per panel at most).
int64_t team_workers(int64_t batch, int64_t outputs, int64_t depth, int64_t panels);

// [M, N] = A · B with the fused kernels' GEMM (kernel.inc, matmul) on a team of threads: A = a [M, K] contiguous, or
// aᵀ for a contiguous a [K, M] when a_transposed; b is B [K, N], any strides; float32/float64. The bits do not depend
// on the thread count.
at::Tensor fused_matmul(const at::Tensor& a, bool a_transposed, const at::Tensor& b);

// The same into `out`, a contiguous [M, N] tensor of a's dtype: out = A · B, or out += A · B with accumulate.
void fused_matmul_into(const at::Tensor& a, bool a_transposed, const at::Tensor& b, const at::Tensor& out,
                       bool accumulate);

}  // namespace cpu
}  // namespace rnnfused
