// The once-per-step meeting point of the fused CPU kernels' team of threads.
//
// The team is whatever one at::parallel_for call over the logical workers 0..n-1 gives (csrc/cpu/fused/team.cpp):
// normally one OpenMP thread per worker, but a smaller team (OMP_DYNAMIC, or a call from inside a parallel region,
// where at::parallel_for runs the whole range inline) hands one thread several workers. So a thread arrives with a
// weight, the number of workers it runs, and the barrier opens when the weights add up to n: it cannot deadlock
// whatever the team size. Waiting spins (a step is microseconds, a futex wake-up is not) for about 20 µs, then
// yields the core so that a descheduled teammate on an oversubscribed machine can finish its step. No thread
// outlives the op: the spinning ends with the call.
//
// Torch-free (the ISA-specific kernel files include it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rnnfused {
namespace cpu {
namespace fused {

class SpinBarrier {
 public:
  explicit SpinBarrier(int64_t workers) : workers_(workers) {}
  SpinBarrier(const SpinBarrier&) = delete;
  SpinBarrier& operator=(const SpinBarrier&) = delete;

  // Called once per phase by every thread of the team with the number of workers it runs. Everything written
  // before the call is visible to every thread after it returns.
  void arrive_and_wait(int64_t weight) {
    const int64_t gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(weight, std::memory_order_acq_rel) + weight == workers_) {
      arrived_.store(0, std::memory_order_relaxed);  // nobody touches it before the generation moves on
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    // Spin for about kSpinNanos (a pause costs 10-150 cycles depending on the CPU, so count time, not pauses),
    // then yield the core at every check.
    const auto start = std::chrono::steady_clock::now();
    bool yielding = false;
    for (int64_t spins = 1; generation_.load(std::memory_order_acquire) == gen; ++spins) {
      if (yielding) {
        std::this_thread::yield();
      } else {
        pause();
        if (spins % 64 == 0) yielding = std::chrono::steady_clock::now() - start > std::chrono::nanoseconds(kSpinNanos);
      }
    }
  }

 private:
  // Longer than a step's imbalance between threads on an idle machine (a few µs), short enough that a thread
  // whose teammate was descheduled hands the core over quickly.
  static constexpr int64_t kSpinNanos = 20000;

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }

  const int64_t workers_;
  alignas(64) std::atomic<int64_t> arrived_{0};
  alignas(64) std::atomic<int64_t> generation_{0};
};

}  // namespace fused
}  // namespace cpu
}  // namespace rnnfused
