// The geometry of a persistent (whole-sequence) recurrence launch, and the one rule that decides whether a layer
// fits on chip. Torch-free and host-compilable with a plain C++ compiler, so the arithmetic is unit-tested on
// machines without a GPU (tests/test_persistent_plan.py compiles it with g++).
//
// The persistent kernels compute, for every step, a [rows x B] block of   W_slice [rows, K] · v_{s-1}[B, K]ᵀ
// where each CTA keeps its W_slice resident in shared memory and v is the vector every CTA produced at the
// previous step (forward: h_{t-1}, K = H; backward: dgh_{t+1}, K = G*H). See csrc/cuda/persistent/DESIGN.md.
//
// Vocabulary (used throughout the persistent_* files):
//   unit      one hidden unit j; a CTA owns `units` consecutive units [cta*units, cta*units + units)
//   rows      rows of the CTA's resident weight slice: forward G*units (gate-major: row g*units + u is W_hh row
//             g*H + j), backward units (row u is W_hh column j, i.e. a row of W_hhᵀ)
//   segment   the K entries of v each CTA produces per step: forward units (h_j), backward G*units (dgh of its
//             units, gate-major); the vector is stored "producer-major": entry cta*seg_stride + i
//   seg_stride K entries reserved per CTA: segment, rounded up to whole 4-byte words for the LL variant (whose
//             words have one writer each); the padding entries are zero in v and in the packed weights
//   chunk     64 bytes of K (32 bf16/fp16, 16 fp32, 8 fp64): two mma k-tiles, one 16-byte load per lane
//   pass      the batch is processed in passes of n_chunk columns (a multiple of 8: mma n-tiles)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "persistent_tuning.h"

namespace rnnfused {
namespace persistent {

constexpr int kThreads = 256;          // threads per CTA (8 warps); one CTA per SM
constexpr int kWarps = kThreads / 32;
constexpr int kMaxMTiles = 4;          // resident rows per CTA <= 64 (accumulator registers: m16 tiles)
constexpr int kMaxNTiles = 4;          // batch columns per pass <= 32 (accumulator registers: n8 tiles)
constexpr int kChunkBytes = 64;        // K bytes per chunk: two mma k-tiles per 16-byte lane load
constexpr int kEpilogueElems = 2;      // (unit, batch row) elements per thread per pass (prefetch registers)
constexpr int kStages = 4;             // chunks of v each warp has in flight (cp.async pipeline depth, power of 2)
constexpr int kPartialPad = 4;         // partial-sum column stride = rows_padded + 4: conflict-free stores
constexpr int kLLWordBytes = 8;        // LL variant: {4 payload bytes, 4-byte step tag}
constexpr int kFlagLineWords = 32;     // 128 bytes: the padded variant's flag stride, and the abort word's line

enum class Direction : int { kForward = 0, kBackward = 1 };

// What the plan needs to know about the GPU (from cudaDeviceProp; tests pass made-up values).
struct DeviceLimits {
  int sm_count = 0;              // multiProcessorCount
  int smem_per_block_optin = 0;  // sharedMemPerBlockOptin (bytes): 232448 on H100, 166912 on A100
  bool cooperative_launch = false;
  int cc_major = 0;              // compute capability (mma.sync bf16/tf32 needs >= 8)
};

// One layer-direction's sizes and the kernel's element sizes.
struct PlanRequest {
  Direction dir = Direction::kForward;
  int gates = 4;         // G (LSTM 4, GRU 3, RNN 1)
  int64_t hidden = 0;    // H
  int64_t batch = 0;     // B
  int elem_bytes = 2;    // storage dtype size (2, 4, 8)
  int acc_bytes = 4;     // accumulator / state type size (4, 8)
  int max_ntiles = kMaxNTiles;  // the kernel instantiation's accumulator bound (smaller for fp64)
  int state_arrays = 1;  // per-(unit, row) on-chip state: forward h_prev (+ c for LSTM); backward dh (+ dc)
  int units_override = 0;    // tuning: force units per CTA (0: the rule below)
  int n_chunk_override = 0;  // tuning: force batch columns per pass (0: the rule below)
  Variant variant = Variant::kBaseline;  // synchronisation variant (persistent_tuning.h)
};

// Everything the kernel needs about its geometry; trivially copyable (a kernel argument).
struct Geometry {
  int dir = 0;            // Direction
  int gates = 0;          // G
  int hidden = 0;         // H
  int batch = 0;          // B
  int units = 0;          // hidden units per CTA (the last CTA may own fewer than `units` real ones)
  int rows = 0;           // resident weight rows per CTA (forward G*units, backward units)
  int rows_padded = 0;    // rows rounded up to m16 tiles
  int ctas = 0;           // grid size
  int segment = 0;        // K entries produced per CTA per step
  int seg_stride = 0;     // K entries reserved per CTA (>= segment; CTA c's entries start at c*seg_stride)
  int k_padded = 0;       // K of the vector, ctas*seg_stride rounded up to a chunk (the tail is zero)
  int chunk_elems = 0;    // K elements per 64-byte chunk
  int chunks = 0;         // k_padded / chunk_elems
  int active_warps = 0;   // warps that own a K range: min(kWarps, chunks)
  int row_stride = 0;     // bytes between smem rows of the weights (== 64 mod 128: conflict-free 16-byte loads)
  int n_chunk = 0;        // batch columns per pass (multiple of 8, <= 8*max_ntiles)
  int passes = 0;         // ceil(B / n_chunk)
  int ring_rows = 0;      // passes*n_chunk: rows of the [2, ring_rows, k_padded] exchange buffer
  int partial_stride = 0; // rows_padded + kPartialPad (accumulator elements)
  int state_arrays = 0;
  int elem_bytes = 0;     // storage element size
  int variant = 0;        // Variant
  int flag_stride = 1;    // u32 words between two CTAs' flags (kFlagLineWords for the padded variant)
  int ll_row_words = 0;   // LL: 8-byte words per row of the exchange ring (k_padded*elem/4)
  int ll_valid_words = 0; // LL: words holding produced entries (ctas*seg_stride*elem/4); beyond them K is zero
  // Byte offsets into dynamic shared memory.
  int64_t off_weights = 0;   // [rows][row_stride]
  int64_t off_stage = 0;     // [active_warps][stage_warp_bytes]  per-warp chunks of v_{s-1}: a cp.async pipeline
                             //   [kStages][n_chunk][64 B]; LL: one unpacked chunk [n_chunk][64 B]
  int64_t off_partials = 0;  // [active_warps][n_chunk][partial_stride]  per-warp split-K sums (acc type)
  int64_t off_state = 0;     // [state_arrays][units][ring_rows]  (acc type)
  int64_t off_bias = 0;      // [2][G][units] (forward only, acc type)
  int64_t off_lengths = 0;   // [ring_rows] int32
  int64_t off_xch = 0;       // LL: [n_chunk][seg_stride] storage elements, this pass's v slice before it is tagged
  int64_t stage_warp_bytes = 0;
  int64_t smem_bytes = 0;
};

inline bool is_ll(const Geometry& g) { return g.variant == int(Variant::kLL); }

// The exchange ring in bytes: [2][ring_rows][k_padded] elements, or [2][ring_rows][ll_row_words] LL words.
inline int64_t ring_bytes(const Geometry& g) {
  const int64_t row = is_ll(g) ? int64_t(g.ll_row_words) * kLLWordBytes : int64_t(g.k_padded) * g.elem_bytes;
  return 2 * int64_t(g.ring_rows) * row;
}

// The flags buffer in u32 words, zero before the launch: flag of CTA c at c*flag_stride, then the launch's abort
// word on a 128-byte line of its own (index abort_word_index).
inline int64_t abort_word_index(const Geometry& g) {
  const int64_t used = int64_t(g.ctas) * g.flag_stride;
  return (used + kFlagLineWords - 1) / kFlagLineWords * kFlagLineWords;
}
inline int64_t flag_words(const Geometry& g) { return abort_word_index(g) + kFlagLineWords; }

struct Plan {
  bool ok = false;
  std::string why_not;  // set when !ok: what does not fit and by how much
  Geometry geo;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Shared-memory layout of one candidate; returns the total bytes.
inline int64_t layout_smem(Geometry& g, const PlanRequest& r) {
  int64_t off = 0;
  auto take = [&off](int64_t bytes) {
    const int64_t at = off;
    off = round_up(off + bytes, 16);
    return at;
  };
  const bool ll = r.variant == Variant::kLL;
  // LL readers load words into registers and unpack one chunk at a time: one slot instead of the cp.async pipeline.
  g.stage_warp_bytes = int64_t(ll ? 1 : kStages) * g.n_chunk * kChunkBytes;
  g.off_weights = take(int64_t(g.rows) * g.row_stride);
  g.off_stage = take(int64_t(g.active_warps) * g.stage_warp_bytes);
  g.off_partials = take(int64_t(g.active_warps) * g.n_chunk * g.partial_stride * r.acc_bytes);
  g.off_state = take(int64_t(g.state_arrays) * g.units * g.ring_rows * r.acc_bytes);
  g.off_bias = take(r.dir == Direction::kForward ? int64_t(2) * g.gates * g.units * r.acc_bytes : 0);
  g.off_lengths = take(int64_t(g.ring_rows) * 4);
  g.off_xch = take(ll ? int64_t(g.n_chunk) * g.seg_stride * r.elem_bytes : 0);
  g.smem_bytes = off;
  return off;
}

// Fills a candidate geometry for `units` per CTA and `n_chunk` columns per pass (no fit check).
inline Geometry candidate(const PlanRequest& r, int units, int n_chunk) {
  const bool fwd = r.dir == Direction::kForward;
  Geometry g;
  g.dir = int(r.dir);
  g.gates = r.gates;
  g.hidden = int(r.hidden);
  g.batch = int(r.batch);
  g.units = units;
  g.rows = fwd ? r.gates * units : units;
  g.rows_padded = int(round_up(g.rows, 16));
  g.ctas = int(ceil_div(r.hidden, units));
  g.segment = fwd ? units : r.gates * units;
  g.elem_bytes = r.elem_bytes;
  g.variant = int(r.variant);
  g.flag_stride = r.variant == Variant::kPadded ? kFlagLineWords : 1;
  // LL words carry 4 bytes of v and have one writer: every CTA's entries fill whole words.
  g.seg_stride = r.variant == Variant::kLL ? int(round_up(int64_t(g.segment) * r.elem_bytes, 4) / r.elem_bytes)
                                           : g.segment;
  g.chunk_elems = kChunkBytes / r.elem_bytes;
  g.k_padded = int(round_up(int64_t(g.ctas) * g.seg_stride, g.chunk_elems));
  g.ll_row_words = int(int64_t(g.k_padded) * r.elem_bytes / 4);
  g.ll_valid_words = int(int64_t(g.ctas) * g.seg_stride * r.elem_bytes / 4);
  g.chunks = g.k_padded / g.chunk_elems;
  g.active_warps = g.chunks < kWarps ? g.chunks : kWarps;
  const int64_t row_bytes = int64_t(g.k_padded) * r.elem_bytes;  // a multiple of 64
  g.row_stride = int(row_bytes % 128 == 0 ? row_bytes + 64 : row_bytes);
  g.n_chunk = n_chunk;
  g.passes = int(ceil_div(r.batch, n_chunk));
  g.ring_rows = g.passes * n_chunk;
  g.partial_stride = g.rows_padded + kPartialPad;
  g.state_arrays = r.state_arrays;
  layout_smem(g, r);
  return g;
}

// The fit rule. Preference among the geometries that fit: fewest m16 tiles per CTA (the per-step tensor-core
// work of a CTA), then fewest batch passes (each pass costs a round trip to L2), then fewest CTAs (less L2 traffic:
// every CTA reads all of v_{s-1} each step, and fewer flags to poll).
inline Plan make_plan(const PlanRequest& r, const DeviceLimits& d) {
  Plan p;
  auto fail = [&p](const std::string& why) {
    p.ok = false;
    p.why_not = why;
    return p;
  };
  if (!d.cooperative_launch) return fail("the GPU does not support cooperative launch");
  if (d.cc_major < 8) {
    return fail("needs compute capability >= 8.0 (mma.sync bf16/tf32), got " + std::to_string(d.cc_major) + ".x");
  }
  if (r.hidden < 1 || r.batch < 1) return fail("needs hidden_size >= 1 and batch >= 1");
  if (r.hidden > (int64_t(1) << 20) || r.batch > (int64_t(1) << 20)) return fail("sizes beyond 2^20 are not planned");
  const bool fwd = r.dir == Direction::kForward;
  const int rows_per_unit = fwd ? r.gates : 1;
  const int64_t min_units = ceil_div(r.hidden, d.sm_count);  // one CTA per SM at most
  const int max_nc = 8 * (r.max_ntiles < kMaxNTiles ? r.max_ntiles : kMaxNTiles);
  const int nc_top = int(round_up(r.batch, 8) < max_nc ? round_up(r.batch, 8) : max_nc);

  bool found = false;
  int64_t best_key[3] = {0, 0, 0};
  int64_t smallest_smem = -1;
  for (int64_t units = 1; units <= r.hidden; ++units) {
    if (units < min_units) continue;
    if (r.units_override > 0 && units != r.units_override) continue;
    const int64_t rows = units * rows_per_unit;
    if (rows > 16 * kMaxMTiles) break;
    // Only the smallest `units` for each CTA count: more units per CTA with the same grid is pure padding.
    if (units > 1 && ceil_div(r.hidden, units) == ceil_div(r.hidden, units - 1) && units - 1 >= min_units &&
        r.units_override == 0)
      continue;
    for (int nc = nc_top; nc >= 8; nc -= 8) {
      if (r.n_chunk_override > 0 && nc != r.n_chunk_override) continue;
      if (units * nc > int64_t(kThreads) * kEpilogueElems) continue;
      const Geometry g = candidate(r, int(units), nc);
      if (smallest_smem < 0 || g.smem_bytes < smallest_smem) smallest_smem = g.smem_bytes;
      if (g.smem_bytes > d.smem_per_block_optin) continue;
      const int64_t key[3] = {g.rows_padded / 16, g.passes, g.ctas};
      const bool better = !found || key[0] < best_key[0] ||
                          (key[0] == best_key[0] &&
                           (key[1] < best_key[1] || (key[1] == best_key[1] && key[2] < best_key[2])));
      if (better) {
        found = true;
        best_key[0] = key[0];
        best_key[1] = key[1];
        best_key[2] = key[2];
        p.geo = g;
      }
      break;  // the widest pass that fits for this `units`
    }
  }
  if (found) {
    p.ok = true;
    return p;
  }
  const char* what = fwd ? "forward" : "backward";
  if (smallest_smem < 0) {
    return fail(std::string(what) + ": hidden_size " + std::to_string(r.hidden) + " needs more than " +
                std::to_string(d.sm_count) + " CTAs of at most " + std::to_string(16 * kMaxMTiles) +
                " resident weight rows (or the tuning overrides match no geometry)");
  }
  return fail(std::string(what) + ": the resident W_hh slice and buffers need at least " +
              std::to_string(smallest_smem) + " bytes of shared memory per CTA, the GPU allows " +
              std::to_string(d.smem_per_block_optin));
}

// One line for logs and the plan-inspection op: what runs, and its on-chip budget.
inline std::string describe(const Geometry& g) {
  return std::string(g.dir == int(Direction::kForward) ? "forward" : "backward") + ": ctas=" + std::to_string(g.ctas) +
         " units/cta=" + std::to_string(g.units) + " rows=" + std::to_string(g.rows) + " (mtiles=" +
         std::to_string(g.rows_padded / 16) + ") K=" + std::to_string(g.k_padded) + " n_chunk=" +
         std::to_string(g.n_chunk) + " passes=" + std::to_string(g.passes) + " warps_k=" +
         std::to_string(g.active_warps) + " smem=" + std::to_string(g.smem_bytes) + "B (weights " +
         std::to_string(int64_t(g.rows) * g.row_stride) + "B) variant=" + variant_name(Variant(g.variant));
}

}  // namespace persistent
}  // namespace rnnfused
