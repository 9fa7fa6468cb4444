"""One whole time step (all tiles a program owns), shared by the per-step and the persistent kernels.

Step s is the s-th step in processing order; its time index is t = s, or T-1-s with REVERSE. The helpers pick the
per-step slices of the sequence buffers (64-bit offsets: T·B·G·H may pass 2^31) and the ping-pong state buffers:

  forward  step s reads h_{t-1} from h0 (s = 0) or h_buf[(s-1) % 2], writes h_t to h_buf[s % 2] or h_n (s = T-1);
           c_{t-1} is c0 (s = 0) or cells[t_prev]
  backward step s (run for s = T-1 … 0) reads the state gradients from grad_h_n/grad_c_n (s = T-1) or
           slot (s+1) % 2 and writes slot s % 2, or the final buffers at s = 0
  resets   starts[t] ([T, B] bool, HAS_RESETS) marks the rows whose step t starts from h0/c0 instead (resets.py)
  zoneout  zoneout[0, t] / zoneout[1, t] ([S, T, B, H], HAS_ZONEOUT) are step t's keep-masks of h / c (zoneout.py)

A program runs the tiles first_tile, first_tile + tile_stride, … of the n_b × n_h tile grid: one tile in the
per-step kernel (grid = all tiles), several in the persistent kernel (grid ≤ SM count, or one program).
"""
import triton
import triton.language as tl

from .tiles import backward_tile, forward_tile


@triton.constexpr_function
def accumulator_dtype(storage):
    """Arithmetic and accumulation type: float64 for float64 storage, float32 otherwise (bf16/fp16/fp32)."""
    return tl.float64 if storage == tl.float64 else tl.float32


@triton.jit
def _step_indices(s, T, B, H, K, REVERSE: tl.constexpr):
    """-> t, the time steps processed before (t_prev) and after (t_next) it, and the 64-bit sizes B·K, B·H."""
    if REVERSE:
        t = T - 1 - s
        t_prev = t + 1
        t_next = t - 1
    else:
        t = s
        t_prev = t - 1
        t_next = t + 1
    return t, t_prev, t_next, tl.cast(B, tl.int64) * K, tl.cast(B, tl.int64) * H


@triton.jit
def _keep_masks(zoneout_ptr, t64, T, BH):
    """zoneout_ptr: [S, T, B, H]. -> step t's [B, H] keep-masks of h (state 0) and c (state 1, LSTM only)."""
    keep_h = zoneout_ptr + t64 * BH
    return keep_h, keep_h + tl.cast(T, tl.int64) * BH


@triton.jit
def forward_step(
    s, T, first_tile, tile_stride,
    xg_ptr,       # [T, B, G·H]
    b_hh_ptr,     # [G·H]
    w_hh_ptr,     # [G·H, K]
    h0_ptr,       # [B, K]
    h_buf_ptr,    # [2, B, K]
    h_n_ptr,      # [B, K]
    c0_ptr,       # [B, H]     (LSTM, cell dtype)
    cells_ptr,    # [T, B, H]  (LSTM, cell dtype)
    out_ptr,      # [T, B, H]
    saved_ptr,    # [T, B, S·H]
    lengths_ptr,  # [B]
    starts_ptr,   # [T, B] bool  (HAS_RESETS)
    zoneout_ptr,  # [S, T, B, H] keep-masks (HAS_ZONEOUT, cell dtype)
    B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_RESETS: tl.constexpr, HAS_ZONEOUT: tl.constexpr, WRITE_STATE: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    ACC: tl.constexpr = accumulator_dtype(w_hh_ptr.dtype.element_ty)
    t, t_prev, t_next, BK, BH = _step_indices(s, T, B, H, K, REVERSE)
    t64 = t.to(tl.int64)
    keep_h, keep_c = _keep_masks(zoneout_ptr, t64, T, BH)
    if s == 0:
        h_src = h0_ptr
        c_src = c0_ptr
    else:
        h_src = h_buf_ptr + ((s - 1) % 2) * BK
        c_src = cells_ptr + t_prev.to(tl.int64) * BH
    if s == T - 1:
        h_dst = h_n_ptr
    else:
        h_dst = h_buf_ptr + (s % 2) * BK
    n_h = tl.cdiv(H, BLOCK_H)
    n_tiles = tl.cdiv(B, BLOCK_B) * n_h
    for tile in range(first_tile, n_tiles, tile_stride):
        forward_tile(t, tile // n_h, tile % n_h, xg_ptr + t64 * BH * G, b_hh_ptr, w_hh_ptr, h_src, h_dst, c_src,
                     cells_ptr + t64 * BH, out_ptr + t64 * BH, saved_ptr + t64 * BH * S, lengths_ptr, h0_ptr,
                     c0_ptr, starts_ptr + t64 * B, keep_h, keep_c, B, H, K, CELL, G, S, HAS_BIAS, HAS_LENGTHS,
                     HAS_RESETS, HAS_ZONEOUT, WRITE_STATE, BLOCK_B, BLOCK_H, BLOCK_K, ACC, PRECISION)


@triton.jit
def backward_step(
    s, T, first_tile, tile_stride,
    dgx_ptr,           # [T, B, G·H]
    dgh_ptr,           # [T, B, G·H]  (the same tensor as dgx unless SPLIT)
    w_hh_ptr,          # [G·H, K]
    grad_h_n_ptr,      # [B, K]
    carry_buf_ptr,     # [2, B, K]
    grad_h_last_ptr,   # [B, K]     the carry after step 0 (grad_h0 = it + dgates_0 W_hh, added by the host)
    grad_out_ptr,      # [T, B, K]
    dr_ptr,            # [B, H]     (FROM_DR)
    grad_c_n_ptr,      # [B, H]     (LSTM, cell dtype)
    dc_buf_ptr,        # [2, B, H]
    grad_c0_ptr,       # [B, H]
    saved_ptr,         # [T, B, S·H]
    c0_ptr,            # [B, H]
    cells_ptr,         # [T, B, H]
    h_prev_seq_ptr,    # [T, B, K]  the state each step started from (GRU)
    output_ptr,        # [T, B, K]  (Elman RNN)
    lengths_ptr,
    starts_ptr,        # [T, B] bool  (HAS_RESETS)
    h0_acc_ptr,        # [B, K]     the gradient reaching h0 at segment starts (cell dtype, zero-initialised)
    c0_acc_ptr,        # [B, H]     ... reaching c0 (LSTM)
    zoneout_ptr,       # [S, T, B, H] keep-masks (HAS_ZONEOUT, cell dtype)
    B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_RESETS: tl.constexpr,
    HAS_ZONEOUT: tl.constexpr, FROM_DR: tl.constexpr, SPLIT: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    ACC: tl.constexpr = accumulator_dtype(w_hh_ptr.dtype.element_ty)
    # t_next: the step processed after t in the forward sweep, the one before it here.
    t, t_prev, t_next, BK, BH = _step_indices(s, T, B, H, K, REVERSE)
    t64 = t.to(tl.int64)
    keep_h, keep_c = _keep_masks(zoneout_ptr, t64, T, BH)
    has_next = s < T - 1
    if s == T - 1:
        carry_src = grad_h_n_ptr
        dc_src = grad_c_n_ptr
        dg_next = dgh_ptr  # unused (has_next is false)
        starts_next = starts_ptr
    else:
        carry_src = carry_buf_ptr + ((s + 1) % 2) * BK
        dc_src = dc_buf_ptr + ((s + 1) % 2) * BH
        dg_next = dgh_ptr + t_next.to(tl.int64) * BH * G
        starts_next = starts_ptr + t_next.to(tl.int64) * B
    if s == 0:
        carry_dst = grad_h_last_ptr
        dc_dst = grad_c0_ptr
        c_prev = c0_ptr
    else:
        carry_dst = carry_buf_ptr + (s % 2) * BK
        dc_dst = dc_buf_ptr + (s % 2) * BH
        c_prev = cells_ptr + t_prev.to(tl.int64) * BH
    n_h = tl.cdiv(H, BLOCK_H)
    n_tiles = tl.cdiv(B, BLOCK_B) * n_h
    for tile in range(first_tile, n_tiles, tile_stride):
        backward_tile(t, tile // n_h, tile % n_h, has_next, dg_next, w_hh_ptr, carry_src, carry_dst,
                      grad_out_ptr + t64 * BK, dr_ptr, dc_src, dc_dst, saved_ptr + t64 * BH * S,
                      cells_ptr + t64 * BH, c_prev, h_prev_seq_ptr + t64 * BK, output_ptr + t64 * BK,
                      dgx_ptr + t64 * BH * G, dgh_ptr + t64 * BH * G, lengths_ptr, c0_ptr, starts_ptr + t64 * B,
                      starts_next, h0_acc_ptr, c0_acc_ptr, keep_h, keep_c, B, H, K, CELL, G, S, HAS_LENGTHS,
                      HAS_RESETS, HAS_ZONEOUT, FROM_DR, SPLIT, BLOCK_B, BLOCK_H, BLOCK_K, ACC, PRECISION)
