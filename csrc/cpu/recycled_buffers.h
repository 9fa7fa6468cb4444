// CPU tensors whose memory is recycled when they are freed: for the large tensors a cell step returns or uses once per
// call (the weight gradients of its backward, its gate buffers), which a Python cell loop asks for again at every step.
//
// Why: a cell loop's backward returns fresh [G*H, I] and [G*H, H] weight gradients at every step; autograd adds them to
// its running sum and frees both. Two 1 MB blocks freed together at the top of glibc's heap exceed the trim threshold
// glibc sets after its first 1 MB mmap (2 MB), so glibc gives the pages back to the kernel and the next step faults
// them in again: ~1.4 ms per MB on the dev VM. Measured (perf stat, 34 fwd+bwd calls of a 64-step LSTMCell loop,
// float32 B = 1 H = 256): 520 K page faults against nn.LSTMCell's 80 K, whose backward frees one weight gradient per
// autograd node. A block made here goes back to a small free list of its size instead, and the next request of that
// size takes it: no malloc, no page fault. The lists keep at most kMaxCachedBytes (csrc/cpu/recycled_buffers.cpp) in
// all; rnnfused._C._cpu_release_recycled() frees them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace rnnfused {
namespace cpu {

// An uninitialised contiguous CPU tensor of `sizes` and `options.dtype()` whose block is recycled when its storage is
// freed (small ones, below kMinRecycledBytes, are plain at::empty). An ordinary tensor in every other respect.
at::Tensor recycled_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

struct RecycledStats {
  int64_t hits = 0;          // requests served from a free list
  int64_t misses = 0;        // requests that allocated a new block
  int64_t cached_bytes = 0;  // bytes now in the free lists
};
RecycledStats recycled_stats();

// Frees the blocks in the free lists (those still in use come back later); returns the bytes freed.
int64_t release_recycled();

// Test hook: whether recycled_empty recycles (false: plain at::empty); returns the previous setting.
bool set_recycling(bool enabled);

}  // namespace cpu
}  // namespace rnnfused
