// Inter-CTA dataflow synchronisation of the persistent kernels, the watchdog that ends a stalled launch cleanly, and
// the asynchronous copies that feed the tensor cores.
//
// Instead of a grid-wide barrier per step, every CTA publishes a monotonic counter `flags[cta]` = number of
// phases it has completed (phase 0: its slice of the initial vector; phase s+1: step s). A warp that needs K
// entries [k0, k1) of v_{s-1} waits only for the CTAs that produce them (flags[p] >= s + 1), so the first warps
// start their tensor-core work while slower producers are still finishing, and no CTA ever touches a central
// counter. (Variants, persistent_tuning.h: `padded` spaces the flags 128 B apart, `poll_warp` lets one warp per CTA
// poll every producer, `ll` replaces the flags by step tags inside the data words.)
//
// Memory-ordering argument (PTX memory model, scope gpu):
//   producer: every thread stores its slice of v_s (weak st.global) → bar.sync (__syncthreads) → thread 0
//             st.release.gpu flags[cta] = s + 2. The barrier orders the other threads' stores before thread 0's
//             release, and release is cumulative, so they are visible to whoever acquires the flag.
//   consumer: lanes poll with ld.acquire.gpu until flags[p] >= s + 1 → __syncwarp (orders the acquiring lanes
//             before the whole warp's later operations) → cp.async.cg (reads L2, never a stale L1 line).
//             poll_warp: ld.relaxed.gpu polls, then fence.acq_rel.gpu once (a relaxed read that observed the release,
//             followed by an acquire fence, synchronises with it), then bar.sync hands the order to the CTA.
//   reuse:    v has two slots; step s reads slot s&1 and writes slot (s+1)&1, last read at step s-1. A CTA writes
//             at step s only after its warps acquired flags[p] >= s + 1 for every producer p (together the warps
//             cover all of K), i.e. after every CTA finished step s-1 including its reads of that slot.
//   ll:       8-byte words {payload, tag} written by one st.relaxed.gpu.u64 (single-copy atomic) and read by
//             ld.relaxed.gpu; a reader uses a payload only when its tag is the step it waits for, so data and flag
//             cannot be torn apart. Slot reuse as above: a producer's step-s words data-depend on everything it read
//             at step s-1, and a CTA overwrites that slot only after reading every producer's step-s words.
// All CTAs must be co-resident (they spin on each other): the launcher uses cudaLaunchCooperativeKernel, which
// fails instead of deadlocking when the grid does not fit.
//
// Watchdog: a waiter counts its polls; every kAbortCheckPeriod polls it also reads the launch's abort word, and past
// the spin limit it claims that word and writes a StallRecord (persistent_stall.h) to host memory. Either way it
// reports "give up", its CTA leaves the kernel at the next barrier (__syncthreads_or), and so do all others at their
// next check: no __trap, no poisoned context. The hot loop stays one load, one compare, one increment.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "persistent_stall.h"

namespace rnnfused {
namespace persistent {

constexpr unsigned kAbortCheckPeriod = 256;    // polls between reads of the abort word (a power of 2)
constexpr unsigned kBackoffMinNs = 32, kBackoffMaxNs = 256;  // poll_warp: __nanosleep between polling rounds

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ unsigned ld_relaxed_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release_gpu(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" : : "l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ void fence_acq_rel_gpu() { asm volatile("fence.acq_rel.gpu;\n" : : : "memory"); }

// LL words: {payload (low 32 bits), step tag (high 32 bits)}, one single-copy-atomic 8-byte access each.
__device__ __forceinline__ unsigned long long ld_relaxed_gpu_u64(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];\n" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_relaxed_gpu_u64(unsigned long long* p, unsigned long long v) {
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;\n" : : "l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ unsigned long long ll_word(unsigned payload, unsigned tag) {
  return (static_cast<unsigned long long>(tag) << 32) | payload;
}
__device__ __forceinline__ unsigned ll_tag(unsigned long long w) { return static_cast<unsigned>(w >> 32); }
__device__ __forceinline__ unsigned ll_payload(unsigned long long w) { return static_cast<unsigned>(w); }

// The first waiter past the spin limit claims the launch's abort word and leaves the record for the host (cold path:
// not inlined; scalar arguments, so that nothing of the caller is kept in local memory for it).
static __device__ __noinline__ void claim_abort(unsigned* abort_word, StallRecord* record, int phase, int producer,
                                                unsigned seen, unsigned target, unsigned spins, int ctas, int phases,
                                                int dir, int variant) {
  if (atomicCAS(abort_word, 0u, 1u) != 0u || record == nullptr || record->stalled != 0u) return;
  record->cta = int(blockIdx.x);
  record->warp = int(threadIdx.x >> 5);
  record->phase = phase;
  record->producer = producer;
  record->seen = seen;
  record->target = target;
  record->ctas = ctas;
  record->phases = phases;
  record->dir = dir;
  record->variant = variant;
  record->spins = spins;
  __threadfence_system();  // the fields before the flag the host reads first
  record->stalled = 1u;
  __threadfence_system();
}

// What every waiter needs to give up cleanly (one per launch; see the file comment).
struct Watchdog {
  unsigned* abort_word;   // device memory, zero at launch
  StallRecord* record;    // pinned mapped host memory, or nullptr
  unsigned spin_limit;
  int ctas, phases, dir, variant;

  __device__ __forceinline__ bool aborted() const { return ld_relaxed_gpu(abort_word) != 0; }

  // Called every kAbortCheckPeriod polls: true when this waiter must give up (someone aborted, or it waited too
  // long; then the first to claim the abort word leaves the record).
  __device__ __forceinline__ bool should_give_up(unsigned spins, int phase, int producer, unsigned seen,
                                                 unsigned target) const {
    if (aborted()) return true;
    if (spins < spin_limit) return false;
    claim_abort(abort_word, record, phase, producer, seen, target, spins, ctas, phases, dir, variant);
    return true;
  }
};

// Whole warp: true once flags[first..last] (kStride words apart) are all >= target (lanes poll producers
// first+lane, +32, ...); false when the launch is being abandoned.
template <int kStride>
__device__ __forceinline__ bool warp_wait_producers(const unsigned* flags, int first, int last, unsigned target,
                                                    const Watchdog& wd, int phase) {
  const int lane = threadIdx.x & 31;
  bool ok = true;
  for (int p = first + lane; ok && p <= last; p += 32) {
    unsigned spins = 0, v;
    while ((v = ld_acquire_gpu(flags + p * kStride)) < target) {
      if ((++spins & (kAbortCheckPeriod - 1)) == 0 && wd.should_give_up(spins, phase, p, v, target)) {
        ok = false;
        break;
      }
    }
  }
  return __all_sync(0xffffffffu, ok);
}

// poll_warp: the calling warp waits for every producer 0..ctas-1 with relaxed polls and __nanosleep backoff between
// rounds, then one acquire fence per lane. The caller follows with a CTA barrier.
__device__ __forceinline__ bool warp_wait_all_relaxed(const unsigned* flags, int ctas, unsigned target,
                                                      const Watchdog& wd, int phase) {
  const int lane = threadIdx.x & 31;
  bool ok = true;
  unsigned sleep_ns = kBackoffMinNs, spins = 0;
  for (int p = lane; ok && p < ctas; p += 32) {
    unsigned v;
    while ((v = ld_relaxed_gpu(flags + p)) < target) {
      if ((++spins & (kAbortCheckPeriod - 1)) == 0 && wd.should_give_up(spins, phase, p, v, target)) {
        ok = false;
        break;
      }
      __nanosleep(sleep_ns);
      sleep_ns = sleep_ns < kBackoffMaxNs ? 2 * sleep_ns : kBackoffMaxNs;
    }
  }
  fence_acq_rel_gpu();  // the single acquire: orders the observed releases before everything after the barrier
  return __all_sync(0xffffffffu, ok);
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
