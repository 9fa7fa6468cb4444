// The tuning knob of the persistent kernels: which synchronisation variant runs, and optional geometry overrides.
// Torch-free plain C++ (host-tested with g++: tests/test_persistent_plan.py).
//
//   RNNFUSED_PERSISTENT_TUNING = [variant][,units=N][,nchunk=N]        e.g. "ll", "poll_warp,units=8", "nchunk=16"
//
// variant (default baseline; every variant is compiled in, see csrc/cuda/persistent/DESIGN.md "Variants"):
//   baseline     per-warp acquire polls of the producers' flags; the flag is released after all of a step's stores
//   store_first  the epilogue stores the exchanged v slice, releases the flag, then stores output/saved/cells
//   padded       baseline with every flag on its own 128-byte line (no false sharing between producers)
//   poll_warp    one warp per CTA polls all producers with relaxed loads + __nanosleep backoff, one acquire fence
//                after success, then a CTA barrier (the other warps never poll)
//   ll           flag-in-data exchange (NCCL LL): v travels as 8-byte {4 payload bytes, 4-byte step tag} words the
//                readers poll directly; no flags, no release/acquire round trip (2x the bytes through L2)
// units / nchunk force the hidden units per CTA / batch columns per pass (the plan rejects geometries that do not fit).
#pragma once

#include <cstdlib>
#include <string>

namespace rnnfused {
namespace persistent {

enum class Variant : int { kBaseline = 0, kStoreFirst = 1, kPadded = 2, kPollWarp = 3, kLL = 4 };
constexpr int kVariantCount = 5;

constexpr const char* kTuningEnvVar = "RNNFUSED_PERSISTENT_TUNING";

inline const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kBaseline:
      return "baseline";
    case Variant::kStoreFirst:
      return "store_first";
    case Variant::kPadded:
      return "padded";
    case Variant::kPollWarp:
      return "poll_warp";
    case Variant::kLL:
      return "ll";
  }
  return "unknown";
}

struct Tuning {
  Variant variant = Variant::kBaseline;
  int units = 0;   // 0: the plan's rule
  int n_chunk = 0; // 0: the plan's rule
};

// Parses the knob's text ("" or null: defaults). Returns false and sets *error (naming the variable and what is
// accepted) on a malformed value.
inline bool parse_tuning(const char* text, Tuning* out, std::string* error) {
  Tuning t;
  const std::string s = text ? text : "";
  size_t at = 0;
  bool have_variant = false;
  auto fail = [&](const std::string& why) {
    if (error) {
      *error = std::string(kTuningEnvVar) + "='" + s + "': " + why +
               " (expected a comma list of at most one variant of baseline, store_first, padded, poll_warp, ll "
               "and units=N, nchunk=N)";
    }
    return false;
  };
  while (at <= s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(at, end - at);
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    item = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    at = end + 1;
    if (item.empty()) {
      if (end == s.size()) break;
      continue;
    }
    const size_t eq = item.find('=');
    if (eq == std::string::npos) {
      bool found = false;
      for (int v = 0; v < kVariantCount; ++v) {
        if (item == variant_name(Variant(v))) {
          if (have_variant) return fail("more than one variant");
          t.variant = Variant(v);
          have_variant = found = true;
        }
      }
      if (!found) return fail("unknown variant '" + item + "'");
      continue;
    }
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    char* stop = nullptr;
    const long n = std::strtol(value.c_str(), &stop, 10);
    if (value.empty() || *stop != '\0' || n < 1 || n > 4096) {
      return fail("'" + key + "' needs a positive integer, got '" + value + "'");
    }
    if (key == "units") {
      t.units = int(n);
    } else if (key == "nchunk") {
      if (n % 8 != 0) return fail("nchunk must be a multiple of 8, got " + value);
      t.n_chunk = int(n);
    } else {
      return fail("unknown key '" + key + "'");
    }
  }
  *out = t;
  return true;
}

}  // namespace persistent
}  // namespace rnnfused
