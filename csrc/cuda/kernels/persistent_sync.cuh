// Inter-CTA dataflow synchronisation of the persistent kernels, and the asynchronous copies that feed them.
//
// Instead of a grid-wide barrier per step, every CTA publishes a monotonic counter `flags[cta]` = number of
// phases it has completed (phase 0: its slice of the initial vector; phase s+1: step s). A warp that needs K
// entries [k0, k1) of v_{s-1} waits only for the CTAs that produce them (flags[p] >= s + 1), so the first warps
// start their tensor-core work while slower producers are still finishing, and no CTA ever touches a central
// counter.
//
// Memory-ordering argument (PTX memory model, scope gpu):
//   producer: every thread stores its slice of v_s (weak st.global) → bar.sync (__syncthreads) → thread 0
//             st.release.gpu flags[cta] = s + 2. The barrier orders the other threads' stores before thread 0's
//             release, and release is cumulative, so they are visible to whoever acquires the flag.
//   consumer: lanes poll with ld.acquire.gpu until flags[p] >= s + 1 → __syncwarp (orders the acquiring lanes
//             before the whole warp's later operations) → cp.async.cg (reads L2, never a stale L1 line).
//   reuse:    v has two slots; step s reads slot s&1 and writes slot (s+1)&1, last read at step s-1. A CTA writes
//             at step s only after its warps acquired flags[p] >= s + 1 for every producer p (together the warps
//             cover all of K), i.e. after every CTA finished step s-1 including its reads of that slot.
// All CTAs must be co-resident (they spin on each other): the launcher uses cudaLaunchCooperativeKernel, which
// fails instead of deadlocking when the grid does not fit. A spin limit turns a lost producer into a trap
// (an error at the next synchronisation) rather than a hung GPU.
#pragma once

#include <cuda_runtime.h>

namespace rnnfused {
namespace persistent {

constexpr unsigned long long kSpinLimit = 1ull << 24;  // ~10-20 s of polling: far beyond any real step

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release_gpu(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" : : "l"(p), "r"(v) : "memory");
}

// Whole warp: returns once flags[first..last] are all >= target (lanes poll producers first+lane, +32, ...).
__device__ __forceinline__ void warp_wait_producers(const unsigned* flags, int first, int last, unsigned target) {
  const int lane = threadIdx.x & 31;
  for (int p = first + lane; p <= last; p += 32) {
    unsigned long long spins = 0;
    while (ld_acquire_gpu(flags + p) < target) {
      if (++spins > kSpinLimit) __trap();
    }
  }
  __syncwarp();
}

// 16-byte global → shared copy that bypasses L1 (.cg): v is rewritten by other SMs every step.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" : : "r"(s), "l"(gmem) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" : : : "memory"); }

// Waits until at most `kPending` of this thread's committed cp.async groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" : : "n"(kPending) : "memory");
}

}  // namespace persistent
}  // namespace rnnfused
