#include "fixed_order.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace rnnfused {
namespace cpu {
namespace {

// Pieces of `n` rows: at least `min_rows` each, at most `max_pieces` (enough to share among the threads of any
// machine this runs on).
struct Split {
  int64_t pieces, rows;
};
Split split_rows(int64_t n, int64_t min_rows, int64_t max_pieces) {
  const int64_t pieces = std::max<int64_t>(1, std::min(max_pieces, n / min_rows));
  const int64_t rows = (n + pieces - 1) / pieces;
  return {(n + rows - 1) / rows, rows};
}

// fn(c) for c in [0, n) with ATen on one thread in every call: inside one parallel region (ATen sees an active
// region and runs sequentially), or inline when PyTorch has one thread or the caller is already inside a region.
// At least two iterations, so that even one piece runs inside an active region rather than inline with ATen free
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
