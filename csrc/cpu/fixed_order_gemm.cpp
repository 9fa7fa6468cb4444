#include "fixed_order_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace rnnfused {
namespace cpu {
namespace {

// Pieces of `n` rows: at least `min_rows` each (BLAS repacks the other operand once per piece), at most
// `max_pieces` (enough to share among the threads of any machine this runs on).
struct Split {
  int64_t pieces, rows;
};
Split split_rows(int64_t n, int64_t min_rows, int64_t max_pieces) {
  const int64_t pieces = std::max<int64_t>(1, std::min(max_pieces, n / min_rows));
  const int64_t rows = (n + pieces - 1) / pieces;
  return {(n + rows - 1) / rows, rows};
}

// fn(c) for c in [0, n) with BLAS on one thread in every call: inside one parallel region (BLAS sees an active
// region and runs sequentially), or inline when PyTorch has one thread or the caller is already inside a region.
// At least two iterations, so that even one piece runs inside an active region rather than inline with BLAS free
// to use every thread. The ATen calls in fn run on OpenMP threads, whose thread-local state is fresh: skip autograd
// there as the op's own thread does (an op kernel runs below autograd; a worker would otherwise see inputs that
// require grad).
template <typename Fn>
void for_each_piece(int64_t n, const Fn& fn) {
  at::parallel_for(0, std::max<int64_t>(n, 2), 1, [&](int64_t begin, int64_t end) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t c = begin; c < std::min(end, n); ++c) fn(c);
  });
}

}  // namespace

at::Tensor fixed_order_mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias, at::Tensor out) {
  const int64_t M = a.size(0), N = b.size(1);
  if (!out.defined()) out = at::empty({M, N}, a.options());
  const Split s = split_rows(M, 256, 16);
  if (s.pieces == 1) {
    // Too few rows to share (a short sequence at B = 1: T·B rows): blocks of columns instead, so that the product
    // still runs on every thread. Fused forward at B = 1, T = 128, 2 threads (2026-12-01, interleaved A/B): LSTM
    // H = 128/256/512 1.18x/1.31x/1.30x faster, GRU H = 256 1.34x; neutral on one thread.
    const Split cols = split_rows(N, 128, 16);
    for_each_piece(cols.pieces, [&](int64_t c) {
      const int64_t c0 = c * cols.rows, n = std::min(cols.rows, N - c0);
      at::Tensor out_cols = out.narrow(1, c0, n);  // [M, n], row stride N
      if (bias.defined()) {
        at::addmm_out(out_cols, bias.narrow(0, c0, n), a, b.narrow(1, c0, n));
      } else {
        at::mm_out(out_cols, a, b.narrow(1, c0, n));
      }
    });
    return out;
  }
  for_each_piece(s.pieces, [&](int64_t c) {
    const int64_t r0 = c * s.rows, rows = std::min(s.rows, M - r0);
    at::Tensor out_rows = out.narrow(0, r0, rows);
    if (bias.defined()) {
      at::addmm_out(out_rows, bias, a.narrow(0, r0, rows), b);
    } else {
      at::mm_out(out_rows, a.narrow(0, r0, rows), b);
    }
  });
  return out;
}

at::Tensor fixed_order_mm_tn(const at::Tensor& a, const at::Tensor& b) {
  const int64_t M = a.size(1), N = b.size(1);
  at::Tensor out = at::empty({M, N}, a.options());
  // Pieces = blocks of output rows (columns of a), each one single-threaded GEMM over the whole of K: no partial sums
  // to store and add (splitting K instead measured 1.4x slower for dW of an LSTM B=64 H=512 T=128 layer, 2026-11-30).
  const Split s = split_rows(M, 128, 8);
  for_each_piece(s.pieces, [&](int64_t c) {
    const int64_t r0 = c * s.rows, rows = std::min(s.rows, M - r0);
    at::Tensor out_rows = out.narrow(0, r0, rows);
    at::mm_out(out_rows, a.narrow(1, r0, rows).t(), b);
  });
  return out;
}

at::Tensor fixed_order_column_sum(const at::Tensor& x) {
  const int64_t N = x.size(1);
  at::Tensor out = at::empty({N}, x.options());
  const Split s = split_rows(N, 128, 16);
  for_each_piece(s.pieces, [&](int64_t c) {
    const int64_t c0 = c * s.rows, cols = std::min(s.rows, N - c0);
    at::Tensor out_cols = out.narrow(0, c0, cols);
    at::sum_out(out_cols, x.narrow(1, c0, cols), 0);
  });
  return out;
}

void for_each_row_chunk(int64_t M, const std::function<void(int64_t, int64_t)>& fn) {
  const Split s = split_rows(M, 256, 16);
  for_each_piece(s.pieces, [&](int64_t c) { fn(c * s.rows, std::min(s.rows, M - c * s.rows)); });
}

}  // namespace cpu
}  // namespace rnnfused
