#include "recycled_buffers.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace rnnfused {
namespace cpu {
namespace {

// Smaller blocks come from glibc's free lists quickly and never from mmap (its threshold starts at 128 KiB).
constexpr size_t kMinRecycledBytes = size_t(128) << 10;
// The most the free lists keep in all, and per block size (a cell loop needs a few blocks of each size at a time).
constexpr size_t kMaxCachedBytes = size_t(64) << 20;
constexpr size_t kMaxBlocksPerSize = 8;

struct Block {
  void* data;
  size_t bytes;
};

// Blocks are freed on whatever thread drops the last reference (autograd's, a DataLoader's): one lock.
struct FreeLists {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> by_size;
  size_t cached_bytes = 0;
  std::atomic<int64_t> hits{0}, misses{0};
  std::atomic<bool> enabled{true};
};

// Never destroyed: tensors may be freed during static destruction at exit.
FreeLists& free_lists() {
  static FreeLists* lists = new FreeLists();
  return *lists;
}

void give_back(void* context) {
  auto* block = static_cast<Block*>(context);
  FreeLists& f = free_lists();
  {
    const std::lock_guard<std::mutex> lock(f.mutex);
    std::vector<void*>& list = f.by_size[block->bytes];
    if (list.size() < kMaxBlocksPerSize && f.cached_bytes + block->bytes <= kMaxCachedBytes) {
      list.push_back(block->data);
      f.cached_bytes += block->bytes;
      block->data = nullptr;
    }
  }
  if (block->data != nullptr) c10::free_cpu(block->data);
  delete block;
}

class RecyclingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    FreeLists& f = free_lists();
    void* data = nullptr;
    {
      const std::lock_guard<std::mutex> lock(f.mutex);
      auto it = f.by_size.find(bytes);
      if (it != f.by_size.end() && !it->second.empty()) {
        data = it->second.back();
        it->second.pop_back();
        f.cached_bytes -= bytes;
      }
    }
    (data != nullptr ? f.hits : f.misses).fetch_add(1, std::memory_order_relaxed);
    if (data == nullptr) data = c10::alloc_cpu(bytes);  // 64-byte aligned, as every CPU tensor
    return {data, new Block{data, bytes}, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

RecyclingAllocator& allocator() {
  static RecyclingAllocator* a = new RecyclingAllocator();
  return *a;
}

}  // namespace

at::Tensor recycled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_CHECK(options.device().is_cpu(), "rnnfused: recycled_empty makes CPU tensors, got ", options.device());
  const at::ScalarType dtype = c10::typeMetaToScalarType(options.dtype());
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
  if (bytes < kMinRecycledBytes || !free_lists().enabled.load(std::memory_order_relaxed)) {
    return at::empty(sizes, options);
  }
  return at::detail::empty_generic(sizes, &allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
                                   std::nullopt);
}

RecycledStats recycled_stats() {
  FreeLists& f = free_lists();
  RecycledStats s;
  s.hits = f.hits.load();
  s.misses = f.misses.load();
  const std::lock_guard<std::mutex> lock(f.mutex);
  s.cached_bytes = static_cast<int64_t>(f.cached_bytes);
  return s;
}

int64_t release_recycled() {
  FreeLists& f = free_lists();
  std::vector<void*> blocks;
  int64_t freed = 0;
  {
    const std::lock_guard<std::mutex> lock(f.mutex);
    for (auto& entry : f.by_size) {
      blocks.insert(blocks.end(), entry.second.begin(), entry.second.end());
      entry.second.clear();
    }
    freed = static_cast<int64_t>(f.cached_bytes);
    f.cached_bytes = 0;
  }
  for (void* data : blocks) c10::free_cpu(data);
  return freed;
}

bool set_recycling(bool enabled) { return free_lists().enabled.exchange(enabled); }

}  // namespace cpu
}  // namespace rnnfused
