"""The recurrent GEMMs of one tile, fused into the step kernels (tl.dot, fp32 accumulate; float64 for float64).

Forward:  acc_g[b, j] = Σ_k h_{t-1}[b, k] · W_hh[g·H + j, k]            for each gate block g < G
Backward: acc[b, j]   = Σ_n dgates_{t+1}[b, n] · W_hh[n, j]   (n over all G·H gate rows)

The activations (h_{t-1}, dgates_{t+1}) were written by other programs at the previous step; in the persistent
kernels that was inside the same launch, so they are loaded with ``.cg`` (L2, bypassing the non-coherent L1).
That also keeps them out of L1, whose only other tenant is then the program's own W_hh slice (loaded with
evict_last): a persistent program reads the same W_hh rows every step (LSTM H=1024, 16-unit tile, bf16: 128 KB),
so they stay in its SM's L1 / L2 instead of being re-fetched from HBM.
"""
import triton
import triton.language as tl

from .resets import load_entering_state


@triton.jit
def _gate_rows_dot(acc, h, w_hh_ptr, GATE: tl.constexpr, H, K, units, unit_ok, ks, k_ok,
                   PRECISION: tl.constexpr):
    # [BLOCK_K, BLOCK_H] tile of W_hhᵀ: column j is row GATE·H + j of W_hh [G·H, K]
    w_rows = (GATE * H + units).to(tl.int64)
    w = tl.load(w_hh_ptr + w_rows[None, :] * K + ks[:, None], mask=unit_ok[None, :] & k_ok[:, None], other=0.0,
                eviction_policy="evict_last")
    return tl.dot(h, w, acc, input_precision=PRECISION, out_dtype=acc.dtype)


@triton.jit
def hidden_times_w_hh_t(h_ptr, h0_ptr, fresh, w_hh_ptr, rows64, row_ok, units, unit_ok, H, K,
                        G: tl.constexpr, HAS_RESETS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                        BLOCK_K: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr):
    """h_ptr: [B, K] h_{t-1}, read from h0_ptr [B, K] on the `fresh` rows [BLOCK_B] (resets);  w_hh_ptr: [G·H, K].
    -> (acc0, acc1, acc2, acc3) [BLOCK_B, BLOCK_H], gates ≥ G zero."""
    acc0 = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    acc1 = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    acc2 = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    acc3 = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        # [BLOCK_B, BLOCK_K] chunk of h_{t-1}, shared by the G gate dots
        h = load_entering_state(h_ptr, h0_ptr, rows64[:, None] * K + ks[None, :], row_ok[:, None] & k_ok[None, :],
                                fresh, HAS_RESETS, ".cg")
        acc0 = _gate_rows_dot(acc0, h, w_hh_ptr, 0, H, K, units, unit_ok, ks, k_ok, PRECISION)
        if G > 1:
            acc1 = _gate_rows_dot(acc1, h, w_hh_ptr, 1, H, K, units, unit_ok, ks, k_ok, PRECISION)
        if G > 2:
            acc2 = _gate_rows_dot(acc2, h, w_hh_ptr, 2, H, K, units, unit_ok, ks, k_ok, PRECISION)
        if G > 3:
            acc3 = _gate_rows_dot(acc3, h, w_hh_ptr, 3, H, K, units, unit_ok, ks, k_ok, PRECISION)
    return acc0, acc1, acc2, acc3


@triton.jit
def dgates_times_w_hh(dg_ptr, w_hh_ptr, rows64, row_ok, units, unit_ok, GH, K,
                      BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
                      PRECISION: tl.constexpr):
    """dg_ptr: [B, G·H] dgates of the next step;  w_hh_ptr: [G·H, K].  -> [BLOCK_B, BLOCK_H] slice of dg @ W_hh."""
    acc = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    for n0 in range(0, GH, BLOCK_K):
        ns = n0 + tl.arange(0, BLOCK_K)
        n_ok = ns < GH
        dg = tl.load(dg_ptr + rows64[:, None] * GH + ns[None, :], mask=row_ok[:, None] & n_ok[None, :], other=0.0,
                     cache_modifier=".cg")  # [BLOCK_B, BLOCK_K]
        w = tl.load(w_hh_ptr + ns.to(tl.int64)[:, None] * K + units[None, :], mask=n_ok[:, None] & unit_ok[None, :],
                    other=0.0, eviction_policy="evict_last")  # [BLOCK_K, BLOCK_H]
        acc = tl.dot(dg, w, acc, input_precision=PRECISION, out_dtype=ACC)
    return acc
