// What a persistent kernel leaves behind when a wait never ends, and how the host reads it. Torch-free plain C++
// (host-tested with g++: tests/test_persistent_plan.py).
//
// A CTA waits for other CTAs every step (flags or LL tags). If a producer never arrives (a protocol bug, or CTAs
// that are not co-resident), the first waiter past the spin limit claims the per-launch abort word (atomicCAS in
// device memory), writes this record into pinned, mapped host memory (system-scope fence, `stalled` last), and
// every CTA leaves the kernel at its next barrier: the launch ends cleanly, the CUDA context stays usable, and the
// host raises an error with the record (at the next persistent launch, or when asked: rnnfused's
// persistent_stall()). The kernel never traps.
#pragma once

#include <cstdint>
#include <string>

namespace rnnfused {
namespace persistent {

// Polls before a waiter gives up (~2-5 s of polling at ~1 µs per L2 round trip: far beyond any real step, and it
// scales with the slowdown under compute-sanitizer, which slows the polls as much as the work).
constexpr unsigned kSpinLimit = 1u << 22;

struct StallRecord {
  volatile uint32_t stalled;  // 1 once the fields below are written (the kernel writes it last)
  int32_t cta;                // the CTA that gave up
  int32_t warp;               // its warp
  int32_t phase;              // the phase (step) it waited in: forward step s, backward phase s (= step T-1-s)
  int32_t producer;           // the CTA it waited for
  uint32_t seen;              // the flag value (or LL step tag) it last read
  uint32_t target;            // the value it needed
  int32_t ctas;               // grid size of that launch
  int32_t phases;             // phases of that launch
  int32_t dir;                // Direction: 0 forward, 1 backward
  int32_t variant;            // Variant
  uint32_t spins;             // polls before giving up
};

inline const char* stall_variant_name(int v) {
  static const char* const names[] = {"baseline", "store_first", "padded", "poll_warp", "ll"};
  return (v >= 0 && v < 5) ? names[v] : "unknown";
}

// One sentence for the error message and logs.
inline std::string describe_stall(const StallRecord& r) {
  if (!r.stalled) return "no stall recorded";
  return std::string("persistent ") + (r.dir == 1 ? "backward" : "forward") + " kernel (variant " +
         stall_variant_name(r.variant) + ", " + std::to_string(r.ctas) + " CTAs, " + std::to_string(r.phases) +
         " phases) stopped: CTA " + std::to_string(r.cta) + " warp " + std::to_string(r.warp) + " waited in phase " +
         std::to_string(r.phase) + " for producer CTA " + std::to_string(r.producer) + ", whose flag read " +
         std::to_string(r.seen) + " (needed " + std::to_string(r.target) + ") after " + std::to_string(r.spins) +
         " polls; the launch was abandoned and its outputs are invalid";
}

}  // namespace persistent
}  // namespace rnnfused
