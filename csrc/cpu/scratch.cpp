#include "scratch.h"

#include <array>

namespace rnnfused {
namespace cpu {
namespace {

// The most one slot keeps between calls (per thread).
constexpr int64_t kMaxCachedBytes = int64_t(512) << 20;

thread_local std::array<at::Tensor, static_cast<size_t>(ScratchSlot::kCount)> t_buffers;

}  // namespace

at::Tensor scratch(ScratchSlot slot, at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const int64_t bytes = numel * int64_t(c10::elementSize(c10::typeMetaToScalarType(options.dtype())));
  if (bytes > kMaxCachedBytes) return at::empty(sizes, options);
  at::Tensor& buffer = t_buffers[static_cast<size_t>(slot)];
  if (!buffer.defined() || buffer.nbytes() < static_cast<size_t>(bytes)) {
    buffer = at::Tensor();  // free the smaller one first
    buffer = at::empty({bytes}, options.dtype(at::kByte));
  }
  // A typed view of the byte buffer's start (its storage is 64-byte aligned, as every CPU allocation).
  return at::empty({0}, options).set_(buffer.storage(), 0, sizes);
}

int64_t release_scratch() {
  int64_t freed = 0;
  for (at::Tensor& buffer : t_buffers) {
    if (buffer.defined()) freed += static_cast<int64_t>(buffer.nbytes());
    buffer = at::Tensor();
  }
  return freed;
}

}  // namespace cpu
}  // namespace rnnfused
