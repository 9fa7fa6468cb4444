// How the persistent kernels exchange the step vector v between CTAs, and how a warp turns its K range of v_{s-1}
// into tensor-core products (see persistent_plan.cuh for the vocabulary, persistent_sync.cuh for the ordering).
//
//   flag variants (baseline, store_first, padded, poll_warp): v lives in a ring [2][ring_rows][k_padded] of storage
//       elements; the epilogue stores straight into it, flags say when a slice is complete, readers stream it through
//       a cp.async pipeline.
//   ll: v lives in a ring [2][ring_rows][ll_row_words] of 8-byte {payload, tag} words; the epilogue stores into a
//       shared-memory slice (xch), which publish_ll tags and writes out; readers load words with relaxed 8-byte loads,
//       re-poll the ones whose tag is not yet the step they wait for, and unpack the payloads into shared memory.
#pragma once

#include <cstdint>

#include "persistent_mma.cuh"
#include "persistent_plan.cuh"
#include "persistent_sync.cuh"

namespace rnnfused {
namespace persistent {

// Where the epilogue writes v entry (batch row b, entry i of this CTA's segment).
template <typename T>
struct VecOut {
  T* base;             // entry (row0, 0)
  int64_t row_stride;  // elements between rows
  int row0;
  __device__ __forceinline__ T* at(int b, int i) const { return base + int64_t(b - row0) * row_stride + i; }
};

// Slot `slot` of the element ring [2, ring_rows, k_padded], and of the LL ring [2, ring_rows, ll_row_words].
template <typename T>
__device__ __forceinline__ T* ring_slot(T* ring, const Geometry& geo, int slot) {
  return ring + int64_t(slot) * geo.ring_rows * geo.k_padded;
}
__device__ __forceinline__ unsigned long long* ll_slot(void* ring, const Geometry& geo, int slot) {
  return reinterpret_cast<unsigned long long*>(ring) + int64_t(slot) * geo.ring_rows * geo.ll_row_words;
}

// Flag variants: this CTA's entries of both slots: slot 0 = v_0 (value(i, b), i < segment), slot 1 = 0; padding
// entries (i >= segment, and the K tail beyond ctas*seg_stride, which the last CTA owns) stay zero forever.
template <typename T, typename ValueFn>
__device__ __forceinline__ void init_ring(T* ring, const Geometry& geo, ValueFn value) {
  const int seg0 = int(blockIdx.x) * geo.seg_stride;
  const bool last = int(blockIdx.x) == geo.ctas - 1;
  const int width = geo.seg_stride + (last ? geo.k_padded - geo.ctas * geo.seg_stride : 0);
  for (int i = threadIdx.x; i < width * geo.ring_rows; i += kThreads) {
    const int k = i % width, b = i / width;
    const int64_t at = int64_t(b) * geo.k_padded + seg0 + k;
    ring_slot(ring, geo, 0)[at] = k < geo.segment ? value(k, b) : StorageTraits<T>::zero();
    ring_slot(ring, geo, 1)[at] = StorageTraits<T>::zero();
  }
}

// LL: tags and writes rows [col0, col0 + cols) of this CTA's slice from xch [n_chunk][seg_stride] into `slot`.
template <typename T>
__device__ __forceinline__ void publish_ll(unsigned long long* slot, const T* xch, const Geometry& geo, int col0,
                                           int cols, unsigned tag) {
  const int seg_words = geo.seg_stride * geo.elem_bytes / 4;
  const unsigned* src = reinterpret_cast<const unsigned*>(xch);
  unsigned long long* dst = slot + int64_t(blockIdx.x) * seg_words;
  for (int i = threadIdx.x; i < cols * seg_words; i += kThreads) {
    const int r = i / seg_words, w = i - r * seg_words;
    st_relaxed_gpu_u64(dst + int64_t(col0 + r) * geo.ll_row_words + w, ll_word(src[r * seg_words + w], tag));
  }
}

// LL: v_0 (value(i, b)) into slot 0 with tag 1, pass by pass through xch; xch is zeroed first, and its padding
// entries (i >= segment, units beyond H) are never written afterwards. Slot 1 and the K tail are zero from the
// host's memset (tag 0 is never awaited). Ends with a barrier.
template <typename T, typename ValueFn>
__device__ __forceinline__ void init_ll(void* ring, T* xch, const Geometry& geo, ValueFn value, bool publish) {
  for (int i = threadIdx.x; i < geo.n_chunk * geo.seg_stride; i += kThreads) xch[i] = StorageTraits<T>::zero();
  for (int pass = 0; pass < geo.passes; ++pass) {
    const int col0 = pass * geo.n_chunk, cols = min(geo.n_chunk, geo.batch - col0);
    __syncthreads();  // xch zeroed / the previous pass published
    for (int i = threadIdx.x; i < cols * geo.segment; i += kThreads) {
      const int k = i % geo.segment, r = i / geo.segment;
      xch[r * geo.seg_stride + k] = value(k, col0 + r);
    }
    __syncthreads();
    if (publish) publish_ll(ll_slot(ring, geo, 0), xch, geo, col0, cols, 1u);
  }
  __syncthreads();
}

// One chunk of the vector slot: rows [col0, col0 + rows) × 64 bytes at chunk `chunk` → a stage slot [rows][64 B].
template <typename T>
__device__ __forceinline__ void issue_chunk(unsigned char* slot, const T* v_prev, const Geometry& geo, int col0,
                                            int rows, int chunk, int lane) {
  const int64_t row_bytes = int64_t(geo.k_padded) * sizeof(T);
  const unsigned char* src = reinterpret_cast<const unsigned char*>(v_prev) + col0 * row_bytes + chunk * kChunkBytes;
  for (int i = lane; i < rows * 4; i += 32) {
    const int r = i >> 2, piece = (i & 3) * 16;
    cp_async_16(slot + r * kChunkBytes + piece, src + r * row_bytes + piece);
  }
}

// Flag variants: acc += W[:, chunks kc0..kc1) · v[col0.., same chunks]ᵀ for this warp: a kStages-deep cp.async
// pipeline (chunk c + kStages is in flight while chunk c is multiplied), one commit group per chunk (empty ones keep
// the count).
template <typename Mma, int MT, int NT, typename T>
__device__ __forceinline__ void warp_product(typename Mma::Acc (&acc)[MT][NT][4], const unsigned char* w_s,
                                             unsigned char* stage_w, const T* v_prev, const Geometry& geo, int col0,
                                             int nt_n, int kc0, int kc1, int lane) {
  const int slot_bytes = geo.n_chunk * kChunkBytes;
  const int rows = nt_n * 8;
  const int mt_n = geo.rows_padded / 16;
#pragma unroll
  for (int i = 0; i < kStages; ++i) {
    if (kc0 + i < kc1) issue_chunk(stage_w + i * slot_bytes, v_prev, geo, col0, rows, kc0 + i, lane);
    cp_async_commit();
  }
  for (int c = kc0; c < kc1; ++c) {
    unsigned char* slot = stage_w + ((c - kc0) & (kStages - 1)) * slot_bytes;
    cp_async_wait<kStages - 1>();  // chunk c has landed (groups complete in order)
    __syncwarp();
    Mma::template chunk<MT, NT>(acc, w_s + c * kChunkBytes, geo.row_stride, slot, geo.rows, mt_n, nt_n, lane);
    __syncwarp();                  // every lane is done with the slot before it is refilled
    if (c + kStages < kc1) issue_chunk(slot, v_prev, geo, col0, rows, c + kStages, lane);
    cp_async_commit();
  }
}

// LL: the same product from the tagged ring. Per chunk every lane owns up to 2*NT pieces (16 bytes of one row = two
// words); it loads them with relaxed 8-byte loads, then settles each word (re-polls until its tag is `tag`), and
// writes the payloads into the warp's unpacked slot [n_chunk][64 B], which the engine reads as in the flag variants.
// The loads of chunk c+1 are issued before chunk c is multiplied. Rows beyond the batch and words beyond the
// produced K (ll_valid_words) are zero and never polled. False when the launch is being abandoned (warp-uniform).
template <typename Mma, int MT, int NT>
__device__ __forceinline__ bool warp_product_ll(typename Mma::Acc (&acc)[MT][NT][4], const unsigned char* w_s,
                                                unsigned char* unpacked, const unsigned long long* slot,
                                                const Geometry& geo, int col0, int nt_n, int kc0, int kc1, int lane,
                                                unsigned tag, const Watchdog& wd, int phase) {
  constexpr int kPieces = 2 * NT;  // NT*8 rows x 8 pieces per chunk row / 32 lanes
  const int pieces = 2 * nt_n;
  const int live_rows = min(nt_n * 8, geo.batch - col0);
  const int mt_n = geo.rows_padded / 16;
  unsigned long long lo[kPieces], hi[kPieces];

  // Word w of piece q of chunk c is needed (polled) iff its row is a real batch row and w < ll_valid_words.
  auto word_of = [&](int c, int q) { return c * 16 + ((lane + 32 * q) & 7) * 2; };
  auto row_of = [&](int q) { return (lane + 32 * q) >> 3; };
  auto load = [&](int c) {
#pragma unroll
    for (int q = 0; q < kPieces; ++q) {
      const int r = row_of(q), w = word_of(c, q);
      const unsigned long long* p = slot + int64_t(col0 + r) * geo.ll_row_words + w;
      const bool live = q < pieces && r < live_rows;
      lo[q] = (live && w < geo.ll_valid_words) ? ld_relaxed_gpu_u64(p) : 0ull;
      hi[q] = (live && w + 1 < geo.ll_valid_words) ? ld_relaxed_gpu_u64(p + 1) : 0ull;
    }
  };
  // Re-polls one word until its tag is `tag`; false when giving up.
  auto settle = [&](unsigned long long& word, const unsigned long long* p, int w) {
    unsigned spins = 0;
    while (ll_tag(word) != tag) {
      if ((++spins & (kAbortCheckPeriod - 1)) == 0) {
        const int producer = (w * 4 / geo.elem_bytes) / geo.seg_stride;  // the CTA that owns entry k = 4w/elem
        if (wd.should_give_up(spins, phase, producer, ll_tag(word), tag)) return false;
      }
      word = ld_relaxed_gpu_u64(p);
    }
    return true;
  };

  if (kc0 < kc1) load(kc0);
  for (int c = kc0; c < kc1; ++c) {
    bool ok = true;
#pragma unroll
    for (int q = 0; q < kPieces; ++q) {
      if (q < pieces) {
        const int r = row_of(q), w = word_of(c, q);
        if (r < live_rows) {
          const unsigned long long* p = slot + int64_t(col0 + r) * geo.ll_row_words + w;
          if (ok && w < geo.ll_valid_words) ok = settle(lo[q], p, w);
          if (ok && w + 1 < geo.ll_valid_words) ok = settle(hi[q], p + 1, w + 1);
        }
        *reinterpret_cast<uint2*>(unpacked + r * kChunkBytes + ((lane + 32 * q) & 7) * 8) =
            make_uint2(ll_payload(lo[q]), ll_payload(hi[q]));
      }
    }
    if (!__all_sync(0xffffffffu, ok)) return false;
    if (c + 1 < kc1) load(c + 1);  // in flight during the product below
    __syncwarp();
    Mma::template chunk<MT, NT>(acc, w_s + c * kChunkBytes, geo.row_stride, unpacked, geo.rows, mt_n, nt_n, lane);
    __syncwarp();  // the slot is rewritten by the next chunk
  }
  return true;
}

}  // namespace persistent
}  // namespace rnnfused
