"""One [BLOCK_B rows × BLOCK_H hidden units] tile of one time step, forward and backward.

A tile computes its recurrent GEMM slice (recurrent_dot.py), applies the cell math (cell_math.py), and writes
everything the C++ ops write for these rows and units, with the same semantics (csrc/sequence/driver.h,
csrc/cpu/pointwise_cpu.h): a row is active at step t iff t < lengths[b]; inactive rows give zero output and zero
saved activations, carry c (and h) unchanged, and pass their state gradient through. With resets (HAS_RESETS), a
row whose step starts a segment reads h0/c0 as its previous state; in backward, the gradient of the state entering
such a step goes to the h0/c0 accumulators instead of the step before it (moved by that step's tile, where the sum
carry + dgates W_hh is formed; resets.py). With zoneout (HAS_ZONEOUT), the state a step leaves is its candidate mixed
with the state it started from, and the state gradients split between the two (zoneout.py).

Pointers here are per-step slices (the step helpers in steps.py select them); sizes: B rows, H units per gate,
G gates, S saved values per unit, K = width of h (H, or proj_size with a projection).
"""
import triton
import triton.language as tl

from .cell_math import GRU, LSTM, RNN_RELU, RNN_TANH, cell_backward, cell_forward, lstm_candidate_cell
from .recurrent_dot import dgates_times_w_hh, hidden_times_w_hh_t
from .resets import load_entering_state, move_to_initial, segment_starts
from .zoneout import rejoin_kept_grad, split_zoneout_grad, zone_out


@triton.jit
def _load_block(row_ptr, BLOCK: tl.constexpr, NUM: tl.constexpr, H, units, mask, ACC: tl.constexpr):
    """Block BLOCK (of NUM) of a [.., NUM·H] row-major tile, as ACC; zeros for BLOCK ≥ NUM."""
    if BLOCK < NUM:
        v = tl.load(row_ptr + BLOCK * H + units[None, :], mask=mask, other=0.0).to(ACC)
    else:
        v = tl.zeros(mask.shape, dtype=ACC)
    return v


@triton.jit
def _store_block(row_ptr, BLOCK: tl.constexpr, NUM: tl.constexpr, H, units, value, mask):
    if BLOCK < NUM:
        tl.store(row_ptr + BLOCK * H + units[None, :], value.to(row_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_block(b_ptr, BLOCK: tl.constexpr, NUM: tl.constexpr, H, units, unit_ok, ACC: tl.constexpr):
    if BLOCK < NUM:
        v = tl.load(b_ptr + BLOCK * H + units, mask=unit_ok, other=0.0).to(ACC)[None, :]
    else:
        v = tl.zeros([1, units.shape[0]], dtype=ACC)
    return v


@triton.jit
def _active_rows(t, rows, row_ok, lengths_ptr, HAS_LENGTHS: tl.constexpr):
    if HAS_LENGTHS:
        lens = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
        active = row_ok & (t < lens)
    else:
        active = row_ok
    return active[:, None]  # [BLOCK_B, 1]


@triton.jit
def _tile_indices(tile_b, tile_h, B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """-> rows [BLOCK_B] (int64), units [BLOCK_H], their bounds masks, the [BLOCK_B, BLOCK_H] mask and offsets
    into a [B, H] state."""
    rows = tile_b * BLOCK_B + tl.arange(0, BLOCK_B)
    units = tile_h * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < B
    unit_ok = units < H
    rows64 = rows.to(tl.int64)
    return rows64, units, row_ok, unit_ok, row_ok[:, None] & unit_ok[None, :], rows64[:, None] * H + units[None, :]


@triton.jit
def forward_tile(
    t, tile_b, tile_h,
    xg_ptr,       # [B, G·H]   x_t W_ihᵀ + b_ih
    b_hh_ptr,     # [G·H]      recurrent bias (HAS_BIAS)
    w_hh_ptr,     # [G·H, K]
    h_src_ptr,    # [B, K]     h_{t-1}
    h_dst_ptr,    # [B, K]     h_t, the running state (WRITE_STATE; K == H)
    c_src_ptr,    # [B, H]     c_{t-1} (LSTM, cell dtype)
    c_dst_ptr,    # [B, H]     c_t (LSTM): cells[t]
    out_ptr,      # [B, H]     output[t], or r_t = σ(o)tanh(c_t) before a projection
    saved_ptr,    # [B, S·H]   activations for backward
    lengths_ptr,  # [B] int64  (HAS_LENGTHS)
    h0_ptr,       # [B, K]     the initial state, read instead of h_{t-1} on rows that start a segment (HAS_RESETS)
    c0_ptr,       # [B, H]     ... and instead of c_{t-1} (LSTM, cell dtype)
    starts_ptr,   # [B] bool   starts[t]: rows whose step t starts a segment (HAS_RESETS)
    keep_h_ptr,   # [B, H]     zoneout keep-mask of h at step t (HAS_ZONEOUT; cell dtype; then WRITE_STATE)
    keep_c_ptr,   # [B, H]     ... of c (LSTM)
    B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_RESETS: tl.constexpr, HAS_ZONEOUT: tl.constexpr, WRITE_STATE: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    rows64, units, row_ok, unit_ok, mask, state_off = _tile_indices(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    fresh = segment_starts(starts_ptr, rows64, row_ok, HAS_RESETS)  # [BLOCK_B]

    # h_{t-1} W_hhᵀ for this tile's units, all gate blocks
    g0, g1, g2, g3 = hidden_times_w_hh_t(h_src_ptr, h0_ptr, fresh, w_hh_ptr, rows64, row_ok, units, unit_ok, H, K,
                                         G, HAS_RESETS, BLOCK_B, BLOCK_H, BLOCK_K, ACC, PRECISION)
    if HAS_BIAS:
        g0 += _bias_block(b_hh_ptr, 0, G, H, units, unit_ok, ACC)
        g1 += _bias_block(b_hh_ptr, 1, G, H, units, unit_ok, ACC)
        g2 += _bias_block(b_hh_ptr, 2, G, H, units, unit_ok, ACC)
        g3 += _bias_block(b_hh_ptr, 3, G, H, units, unit_ok, ACC)
    xg_row = xg_ptr + rows64[:, None] * (G * H)
    x0 = _load_block(xg_row, 0, G, H, units, mask, ACC)
    x1 = _load_block(xg_row, 1, G, H, units, mask, ACC)
    x2 = _load_block(xg_row, 2, G, H, units, mask, ACC)
    x3 = _load_block(xg_row, 3, G, H, units, mask, ACC)

    if CELL == LSTM:
        c_prev = load_entering_state(c_src_ptr, c0_ptr, state_off, mask, fresh, HAS_RESETS, "").to(ACC)
    else:
        c_prev = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    if WRITE_STATE or CELL == GRU:  # both mean K == H
        h_prev = load_entering_state(h_src_ptr, h0_ptr, state_off, mask, fresh, HAS_RESETS, ".cg").to(ACC)
    else:
        h_prev = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)

    out, c_new, s0, s1, s2, s3 = cell_forward(CELL, x0, x1, x2, x3, g0, g1, g2, g3, c_prev, h_prev)
    # Zoneout mixes the candidates with the entering state; the output is the zoned-out h (out was computed from the
    # candidate c, as the cell's equations say).
    out = zone_out(out, h_prev, keep_h_ptr, state_off, mask, HAS_ZONEOUT)
    if CELL == LSTM:
        c_new = zone_out(c_new, c_prev, keep_c_ptr, state_off, mask, HAS_ZONEOUT)

    active = _active_rows(t, rows64, row_ok, lengths_ptr, HAS_LENGTHS)
    tl.store(out_ptr + state_off, tl.where(active, out, 0.0).to(out_ptr.dtype.element_ty), mask=mask)
    saved_row = saved_ptr + rows64[:, None] * (S * H)
    _store_block(saved_row, 0, S, H, units, tl.where(active, s0, 0.0), mask)
    _store_block(saved_row, 1, S, H, units, tl.where(active, s1, 0.0), mask)
    _store_block(saved_row, 2, S, H, units, tl.where(active, s2, 0.0), mask)
    _store_block(saved_row, 3, S, H, units, tl.where(active, s3, 0.0), mask)
    if CELL == LSTM:
        tl.store(c_dst_ptr + state_off, tl.where(active, c_new, c_prev).to(c_dst_ptr.dtype.element_ty), mask=mask)
    if WRITE_STATE:
        # Round to the storage dtype first: the state is the output (h_t = output[t] on active rows).
        out_st = out.to(h_dst_ptr.dtype.element_ty)
        h_keep = h_prev.to(h_dst_ptr.dtype.element_ty)
        tl.store(h_dst_ptr + state_off, tl.where(active, out_st, h_keep), mask=mask)


@triton.jit
def backward_tile(
    t, tile_b, tile_h, has_next,
    dg_next_ptr,    # [B, G·H]   dL/d(recurrent pre-activations) of the next step (has_next)
    w_hh_ptr,       # [G·H, K]
    carry_src_ptr,  # [B, K]     dL/dh_t from paths that skip W_hh (h_n's grad at the last step)
    carry_dst_ptr,  # [B, K]     the same for h_{t-1}
    grad_out_ptr,   # [B, K]     dL/doutput[t]
    dr_ptr,         # [B, H]     dL/dr_t through a projection (FROM_DR; then carry_* are unused)
    dc_src_ptr,     # [B, H]     dL/dc_t (LSTM, cell dtype)
    dc_dst_ptr,     # [B, H]     dL/dc_{t-1}
    saved_ptr,      # [B, S·H]
    c_ptr,          # [B, H]     c_t (LSTM)
    c_prev_ptr,     # [B, H]     c_{t-1} (LSTM)
    h_prev_ptr,     # [B, K]     h_{t-1} (GRU; h0 at segment starts already: layer.previous_states)
    out_ptr,        # [B, K]     output[t] (Elman RNN)
    dgx_ptr,        # [B, G·H]   dL/d(input-projection pre-activations); zero on inactive rows
    dgh_ptr,        # [B, G·H]   dL/d(recurrent pre-activations) (SPLIT: GRU; otherwise it is dgx)
    lengths_ptr,
    c0_ptr,         # [B, H]     read instead of c_{t-1} on rows whose step t starts a segment (LSTM, HAS_RESETS)
    starts_ptr,     # [B] bool   starts[t]
    starts_next_ptr,  # [B] bool starts[t_next]: rows whose next step started a segment (has_next)
    h0_acc_ptr,     # [B, K]     gradient reaching h0 at segment starts (cell dtype; not FROM_DR: the host does it)
    c0_acc_ptr,     # [B, H]     gradient reaching c0 at segment starts (LSTM)
    keep_h_ptr,     # [B, H]     zoneout keep-mask of h at step t (HAS_ZONEOUT; cell dtype; never FROM_DR)
    keep_c_ptr,     # [B, H]     ... of c (LSTM)
    B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_RESETS: tl.constexpr,
    HAS_ZONEOUT: tl.constexpr, FROM_DR: tl.constexpr, SPLIT: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr, PRECISION: tl.constexpr,
):
    # state_off: [BLOCK_B, BLOCK_H] offsets into [B, H] states (== [B, K] ones: K == H here)
    rows64, units, row_ok, unit_ok, mask, state_off = _tile_indices(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active = _active_rows(t, rows64, row_ok, lengths_ptr, HAS_LENGTHS)
    fresh = segment_starts(starts_ptr, rows64, row_ok, HAS_RESETS)                      # [BLOCK_B]
    fresh_next = segment_starts(starts_next_ptr, rows64, row_ok & has_next, HAS_RESETS)  # [BLOCK_B]

    # dL/dh_t (or dL/dr_t): the direct paths plus dgates_{t+1} W_hh
    if FROM_DR:
        dout = tl.load(dr_ptr + state_off, mask=mask, other=0.0).to(ACC)
    else:
        # carry + dgates_{t+1} W_hh is dL/d(state entering the next step): where that step started a segment, it
        # belongs to h0 (both parts move; grad_output[t] stays). The order of the sum is the no-resets one: fewer
        # live registers than adding grad_output last.
        dout = tl.load(carry_src_ptr + state_off, mask=mask, other=0.0).to(ACC)
        dout = move_to_initial(dout, h0_acc_ptr, state_off, mask, fresh_next, HAS_RESETS)
        grad_out = tl.load(grad_out_ptr + state_off, mask=mask, other=0.0).to(ACC)
        dout += tl.where(active, grad_out, 0.0)  # the output of a padded step is a constant zero
        if has_next:
            rec = dgates_times_w_hh(dg_next_ptr, w_hh_ptr, rows64, row_ok, units, unit_ok, G * H, K, BLOCK_B,
                                    BLOCK_H, BLOCK_K, ACC, PRECISION)
            dout += move_to_initial(rec, h0_acc_ptr, state_off, mask, fresh_next, HAS_RESETS)
    # dout is dL/dh_t; with zoneout, m·dout skips the cell (dh_kept) and the cell sees (1 − m)·dout.
    dh_kept, dout_cell = split_zoneout_grad(dout, keep_h_ptr, state_off, mask, HAS_ZONEOUT)

    saved_row = saved_ptr + rows64[:, None] * (S * H)
    s0 = _load_block(saved_row, 0, S, H, units, mask, ACC)
    s1 = _load_block(saved_row, 1, S, H, units, mask, ACC)
    s2 = _load_block(saved_row, 2, S, H, units, mask, ACC)
    s3 = _load_block(saved_row, 3, S, H, units, mask, ACC)
    zero = tl.zeros([BLOCK_B, BLOCK_H], dtype=ACC)
    if CELL == LSTM:
        dc = tl.load(dc_src_ptr + state_off, mask=mask, other=0.0).to(ACC)
        dc = move_to_initial(dc, c0_acc_ptr, state_off, mask, fresh_next, HAS_RESETS)  # as dout, for c0
        dc_kept, dc_cell = split_zoneout_grad(dc, keep_c_ptr, state_off, mask, HAS_ZONEOUT)
        if not HAS_ZONEOUT:  # (loaded before c_prev: the code without zoneout is the one it was before zoneout)
            c = tl.load(c_ptr + state_off, mask=mask, other=0.0).to(ACC)
        c_prev = load_entering_state(c_prev_ptr, c0_ptr, state_off, mask, fresh, HAS_RESETS, "").to(ACC)
        if HAS_ZONEOUT:  # the cell math ran on the candidate c', not on the zoned-out c_t that cells[t] keeps
            c = lstm_candidate_cell(s0, s1, s2, c_prev)
    else:
        dc, dc_kept, dc_cell, c, c_prev = zero, zero, zero, zero, zero
    if CELL == GRU:
        h_prev = tl.load(h_prev_ptr + state_off, mask=mask, other=0.0).to(ACC)
    else:
        h_prev = zero
    if CELL == RNN_TANH or CELL == RNN_RELU:
        out = tl.load(out_ptr + state_off, mask=mask, other=0.0).to(ACC)
    else:
        out = zero

    dx0, dx1, dx2, dx3, dh2, dc_prev, dh_direct = cell_backward(CELL, dout_cell, dc_cell, s0, s1, s2, s3, c, c_prev,
                                                                h_prev, out)

    dgx_row = dgx_ptr + rows64[:, None] * (G * H)
    _store_block(dgx_row, 0, G, H, units, tl.where(active, dx0, 0.0), mask)
    _store_block(dgx_row, 1, G, H, units, tl.where(active, dx1, 0.0), mask)
    _store_block(dgx_row, 2, G, H, units, tl.where(active, dx2, 0.0), mask)
    _store_block(dgx_row, 3, G, H, units, tl.where(active, dx3, 0.0), mask)
    if SPLIT:  # GRU: the recurrent n block is r·dn; r and z blocks equal dgx's
        dgh_row = dgh_ptr + rows64[:, None] * (G * H)
        _store_block(dgh_row, 0, G, H, units, tl.where(active, dx0, 0.0), mask)
        _store_block(dgh_row, 1, G, H, units, tl.where(active, dx1, 0.0), mask)
        _store_block(dgh_row, 2, G, H, units, tl.where(active, dh2, 0.0), mask)
    if CELL == LSTM:
        dc_prev = rejoin_kept_grad(dc_prev, dc_kept, HAS_ZONEOUT)
        tl.store(dc_dst_ptr + state_off, tl.where(active, dc_prev, dc).to(dc_dst_ptr.dtype.element_ty), mask=mask)
    if not FROM_DR:
        # Inactive rows: the state passed through this step untouched (zoneout included), and so does its gradient.
        carry = tl.where(active, rejoin_kept_grad(dh_direct, dh_kept, HAS_ZONEOUT), dout)
        tl.store(carry_dst_ptr + state_off, carry.to(carry_dst_ptr.dtype.element_ty), mask=mask)
