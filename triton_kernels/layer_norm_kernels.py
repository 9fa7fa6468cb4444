"""Per-step kernels of the LayerNorm LSTM/GRU recurrence (rnnfused/_layer_norm_ops.py has the equations and the
``saved`` layout): everything of one time step but the recurrent GEMM, which the host runs before (forward:
hw = h_{t-1} W_hhᵀ) or after (backward: d(hW)[t] W_hh) each launch with torch.mm.

Grid: one program per BLOCK_B rows. LayerNorm needs whole rows, so a program holds all G·H units of its rows, as G
gate tiles [BLOCK_B, BLOCK_H] (BLOCK_H = next power of two ≥ H; gate k is columns [kH, (k+1)H) of a [.., G·H] row),
which the gate math combines unit by unit; the LayerNorm statistics reduce over all G tiles. Rows never interact, so
the running buffers (state, state gradients, the per-row weight-gradient accumulators) are read and written in place
by the program that owns the rows: no atomics, no ping-pong.

Semantics as the reference (rnnfused/reference._scan): a row is active at step t iff t < lengths[b]; inactive rows
give zero output, keep their state, and in backward pass their state gradients through with zero gate gradients.
Resets: the kernel of the step processed before a segment start writes h0/c0 as the next step's entering state (its
GEMM reads it); in backward, the kernel of the step before it moves the gradient of that entering state to the
h0/c0 accumulators (resets.move_to_initial). Zoneout: keep-masks m: state = m·previous + (1 − m)·candidate.
Arithmetic in float32 (float64 for float64 input); 64-bit offsets (T·B·G·H may pass 2^31).
"""
import triton
import triton.language as tl

from rnnfused.reference import LAYER_NORM_EPS

from .cell_math import LSTM, sigmoid, tanh
from .resets import move_to_initial
from .steps import accumulator_dtype

EPS = tl.constexpr(LAYER_NORM_EPS)


@triton.jit
def _gate(row_ptr, K: tl.constexpr, G: tl.constexpr, H, cols, mask, ACC: tl.constexpr):
    """Gate K's [BLOCK_B, BLOCK_H] tile of [B, ·] rows (row_ptr: [BLOCK_B, 1] row starts, gate k at column k·H),
    as ACC, zero where masked; zeros for K ≥ G (unused gate slots compile away)."""
    if K < G:
        v = tl.load(row_ptr + K * H + cols[None, :], mask=mask, other=0.0).to(ACC)
    else:
        v = tl.zeros(mask.shape, dtype=ACC)
    return v


@triton.jit
def _gate_store(row_ptr, K: tl.constexpr, G: tl.constexpr, H, cols, value, mask):
    if K < G:
        tl.store(row_ptr + K * H + cols[None, :], value.to(row_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _vector(ptr, K: tl.constexpr, G: tl.constexpr, H, cols, col_ok, ACC: tl.constexpr):
    """Gate K's slice of a [G·H] parameter as a [1, BLOCK_H] row (zero outside H, zeros for K ≥ G)."""
    if K < G:
        v = tl.load(ptr + K * H + cols, mask=col_ok, other=0.0).to(ACC)[None, :]
    else:
        v = tl.zeros([1, cols.shape[0]], dtype=ACC)
    return v


@triton.jit
def _accumulate(row_ptr, K: tl.constexpr, G: tl.constexpr, H, cols, value, mask):
    """acc[rows, gate K] += value ([B, G·H] accumulator owned by this program's rows)."""
    if K < G:
        ptrs = row_ptr + K * H + cols[None, :]
        tl.store(ptrs, tl.load(ptrs, mask=mask, other=0.0) + value, mask=mask)


@triton.jit
def _normalize(v0, v1, v2, v3, mask, G: tl.constexpr, H):
    """LayerNorm statistics over the first G (1..4) tiles' valid units (biased variance): -> x̂ of each tile (zero where
    masked) and rstd [BLOCK_B]. Two passes (mean, then the centred squares): no cancellation."""
    n = G * H
    total = tl.sum(v0, 1)
    if G >= 2:
        total += tl.sum(v1, 1)
    if G >= 3:
        total += tl.sum(v2, 1)
    if G == 4:
        total += tl.sum(v3, 1)
    mean = (total / n)[:, None]
    d0 = tl.where(mask, v0 - mean, 0.0)
    d1 = tl.where(mask, v1 - mean, 0.0)
    d2 = tl.where(mask, v2 - mean, 0.0)
    d3 = tl.where(mask, v3 - mean, 0.0)
    sq = tl.sum(d0 * d0, 1)
    if G >= 2:
        sq += tl.sum(d1 * d1, 1)
    if G >= 3:
        sq += tl.sum(d2 * d2, 1)
    if G == 4:
        sq += tl.sum(d3 * d3, 1)
    rstd = 1.0 / tl.sqrt(sq / n + EPS)
    r = rstd[:, None]
    return d0 * r, d1 * r, d2 * r, d3 * r, rstd


@triton.jit
def _normalize_backward(dy0, dy1, dy2, dy3, x0, x1, x2, x3, rstd, G: tl.constexpr, H):
    """LayerNorm backward over the G tiles: dy = dL/dx̂ (upstream·γ, zero where masked) -> dL/dv =
    rstd·(dy − mean(dy) − x̂·mean(dy·x̂))."""
    n = G * H
    s1 = tl.sum(dy0, 1)
    s2 = tl.sum(dy0 * x0, 1)
    if G >= 2:
        s1 += tl.sum(dy1, 1)
        s2 += tl.sum(dy1 * x1, 1)
    if G >= 3:
        s1 += tl.sum(dy2, 1)
        s2 += tl.sum(dy2 * x2, 1)
    if G == 4:
        s1 += tl.sum(dy3, 1)
        s2 += tl.sum(dy3 * x3, 1)
    m1 = (s1 / n)[:, None]
    m2 = (s2 / n)[:, None]
    r = rstd[:, None]
    return r * (dy0 - m1 - x0 * m2), r * (dy1 - m1 - x1 * m2), r * (dy2 - m1 - x2 * m2), r * (dy3 - m1 - x3 * m2)


@triton.jit
def _rows(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """-> rows [BLOCK_B] int64, row_ok, cols [BLOCK_H], col_ok, the tile mask and its offsets in a [B, H] buffer."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    col_ok = cols < H
    mask = row_ok[:, None] & col_ok[None, :]
    return rows64, row_ok, cols, col_ok, mask, rows64[:, None] * H + cols[None, :]


@triton.jit
def _active(t, rows64, row_ok, lengths_ptr, HAS_LENGTHS: tl.constexpr):
    """[BLOCK_B, 1]: rows whose step t is not padding."""
    if HAS_LENGTHS:
        active = row_ok & (t < tl.load(lengths_ptr + rows64, mask=row_ok, other=0))
    else:
        active = row_ok
    return active[:, None]


@triton.jit
def _next_starts(starts_ptr, t_next, B, rows64, row_ok, HAS_RESETS: tl.constexpr):
    """[BLOCK_B] bool: rows whose next processed step (t_next; -1: none) starts from the initial state."""
    if HAS_RESETS:
        at = tl.maximum(t_next, 0).to(tl.int64) * B
        fresh = tl.load(starts_ptr + at + rows64, mask=row_ok & (t_next >= 0), other=0) != 0
    else:
        fresh = tl.zeros_like(row_ok)
    return fresh


@triton.jit(do_not_specialize=["t", "t_next"])
def layer_norm_forward_step_kernel(
    t, t_next,            # this step's time index; the next processed step's (-1: none)
    hw_ptr,               # [B, G·H]  h_{t-1} W_hhᵀ (the host's GEMM)
    xg_ptr,               # [T, B, G·H]
    b_hh_ptr,             # [G·H]     recurrent bias (HAS_BIAS; GRU)
    ln_hh_w_ptr,          # [G·H]     γ_hh
    ln_c_w_ptr,           # [H]       γ_c (LSTM)
    ln_c_b_ptr,           # [H]       β_c (LSTM)
    h0_ptr,               # [B, H]
    c0_ptr,               # [B, H]    (LSTM)
    h_run_ptr,            # [B, H]    in: the state entering step t; out: the state entering the next step
    c_run_ptr,            # [B, H]    same for c (LSTM, cell dtype)
    out_ptr,              # [T, B, H]
    saved_ptr,            # [T, B, W] (TRAIN, cell dtype)
    cells_ptr,            # [T, B, H] (TRAIN and LSTM, cell dtype)
    lengths_ptr,          # [B] int64 (HAS_LENGTHS)
    starts_ptr,           # [T, B] bool (HAS_RESETS): step t of row b starts from h0/c0
    zoneout_ptr,          # [S, T, B, H] keep-masks (HAS_ZONEOUT, cell dtype)
    T, B, H,
    CELL: tl.constexpr, G: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_RESETS: tl.constexpr, HAS_ZONEOUT: tl.constexpr, TRAIN: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    ACC: tl.constexpr = accumulator_dtype(xg_ptr.dtype.element_ty)
    IS_LSTM: tl.constexpr = CELL == LSTM
    CS: tl.constexpr = 1 if IS_LSTM else 0              # cell-state parts in `saved`
    rows64, row_ok, cols, col_ok, mask, st = _rows(B, H, BLOCK_B, BLOCK_H)
    GH = G * H
    BH = tl.cast(B, tl.int64) * H
    t64 = t.to(tl.int64)
    g_rows = rows64[:, None] * GH                       # [BLOCK_B, 1] row starts in a [B, G·H] buffer
    # LN_hh(h W_hhᵀ): x̂ of each gate block, rstd per row
    hw = hw_ptr + g_rows
    x0, x1, x2, x3, rstd_hh = _normalize(_gate(hw, 0, G, H, cols, mask, ACC), _gate(hw, 1, G, H, cols, mask, ACC),
                                         _gate(hw, 2, G, H, cols, mask, ACC), _gate(hw, 3, G, H, cols, mask, ACC),
                                         mask, G, H)
    xg = xg_ptr + t64 * BH * G + g_rows
    a0 = _gate(xg, 0, G, H, cols, mask, ACC)
    a1 = _gate(xg, 1, G, H, cols, mask, ACC)
    a2 = _gate(xg, 2, G, H, cols, mask, ACC)
    a3 = _gate(xg, 3, G, H, cols, mask, ACC)
    b0 = _vector(ln_hh_w_ptr, 0, G, H, cols, col_ok, ACC) * x0
    b1 = _vector(ln_hh_w_ptr, 1, G, H, cols, col_ok, ACC) * x1
    b2 = _vector(ln_hh_w_ptr, 2, G, H, cols, col_ok, ACC) * x2
    b3 = _vector(ln_hh_w_ptr, 3, G, H, cols, col_ok, ACC) * x3
    if HAS_BIAS:
        b0 += _vector(b_hh_ptr, 0, G, H, cols, col_ok, ACC)
        b1 += _vector(b_hh_ptr, 1, G, H, cols, col_ok, ACC)
        b2 += _vector(b_hh_ptr, 2, G, H, cols, col_ok, ACC)
        b3 += _vector(b_hh_ptr, 3, G, H, cols, col_ok, ACC)
    h_prev = tl.load(h_run_ptr + st, mask=mask, other=0.0).to(ACC)
    if IS_LSTM:
        s0 = sigmoid(a0 + b0)  # i
        s1 = sigmoid(a1 + b1)  # f
        s2 = tanh(a2 + b2)     # g
        s3 = sigmoid(a3 + b3)  # o
        c_prev = tl.load(c_run_ptr + st, mask=mask, other=0.0).to(ACC)
        c_new = s1 * c_prev + s2 * s0
        xc0, _u1, _u2, _u3, rstd_c = _normalize(c_new, c_new, c_new, c_new, mask, 1, H)
        y = (_vector(ln_c_w_ptr, 0, 1, H, cols, col_ok, ACC) * xc0 + _vector(ln_c_b_ptr, 0, 1, H, cols, col_ok, ACC))
        h_new = s3 * tanh(y)
    else:
        s0 = sigmoid(a0 + b0)  # r
        s1 = sigmoid(a1 + b1)  # z
        s2 = tanh(a2 + s0 * b2)  # n
        s3 = b2                # b_n: LN_hh(h W_hnᵀ) + b_hn
        h_new = (1.0 - s1) * s2 + s1 * h_prev
    if HAS_ZONEOUT:
        z_at = zoneout_ptr + t64 * BH + st
        h_new += tl.load(z_at, mask=mask, other=0.0).to(ACC) * (h_prev - h_new)
        if IS_LSTM:
            c_new += tl.load(z_at + T * BH, mask=mask, other=0.0).to(ACC) * (c_prev - c_new)
    active = _active(t, rows64, row_ok, lengths_ptr, HAS_LENGTHS)
    tl.store(out_ptr + t64 * BH + st, tl.where(active, h_new, 0.0).to(out_ptr.dtype.element_ty), mask=mask)
    h_state = tl.where(active, h_new, h_prev)
    if IS_LSTM:
        c_state = tl.where(active, c_new, c_prev)
    if TRAIN:
        width = (4 + CS + G) * H + 1 + CS
        sv = saved_ptr + t64 * B * width + rows64[:, None] * width
        _gate_store(sv, 0, 4, H, cols, s0, mask)
        _gate_store(sv, 1, 4, H, cols, s1, mask)
        _gate_store(sv, 2, 4, H, cols, s2, mask)
        _gate_store(sv, 3, 4, H, cols, s3, mask)
        xs = sv + (4 + CS) * H
        _gate_store(xs, 0, G, H, cols, x0, mask)
        _gate_store(xs, 1, G, H, cols, x1, mask)
        _gate_store(xs, 2, G, H, cols, x2, mask)
        _gate_store(xs, 3, G, H, cols, x3, mask)
        rstd_at = saved_ptr + t64 * B * width + rows64 * width + (4 + CS + G) * H
        tl.store(rstd_at, rstd_hh.to(saved_ptr.dtype.element_ty), mask=row_ok)
        if IS_LSTM:
            _gate_store(sv, 4, 5, H, cols, xc0, mask)
            tl.store(rstd_at + 1, rstd_c.to(saved_ptr.dtype.element_ty), mask=row_ok)
            tl.store(cells_ptr + t64 * BH + st, c_state.to(cells_ptr.dtype.element_ty), mask=mask)
    # The next step's entering state: h0/c0 where it starts a segment.
    fresh = _next_starts(starts_ptr, t_next, B, rows64, row_ok, HAS_RESETS)
    if HAS_RESETS:
        h_state = tl.where(fresh[:, None], tl.load(h0_ptr + st, mask=mask, other=0.0).to(ACC), h_state)
        if IS_LSTM:
            c_state = tl.where(fresh[:, None], tl.load(c0_ptr + st, mask=mask, other=0.0).to(ACC), c_state)
    tl.store(h_run_ptr + st, h_state.to(h_run_ptr.dtype.element_ty), mask=mask)
    if IS_LSTM:
        tl.store(c_run_ptr + st, c_state.to(c_run_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["t", "t_next"])
def layer_norm_backward_step_kernel(
    t, t_next,            # this step's time index; the step processed after it in the forward sweep (-1: none)
    grad_out_ptr,         # [T, B, H]
    dh_mm_ptr,            # [B, H]    d(hW)[t_next] W_hh (the host's GEMM; zero before the first launch)
    dh_ptr,               # [B, H]    the rest of dL/d(state entering t_next) in; of the state entering t out (ACC)
    dc_ptr,               # [B, H]    dL/d(c entering t_next) in, entering t out (LSTM, ACC)
    h0_acc_ptr,           # [B, H]    what reaches h0 at segment starts (ACC, zero-initialised)
    c0_acc_ptr,           # [B, H]    ... c0 (LSTM)
    saved_ptr,            # [T, B, W] (cell dtype)
    c_prev_ptr,           # [T, B, H] the c each step started from (LSTM, cell dtype)
    h_prev_ptr,           # [T, B, H] the h each step started from (GRU)
    ln_hh_w_ptr,          # [G·H]
    ln_c_w_ptr,           # [H] (LSTM)
    ln_c_b_ptr,           # [H] (LSTM)
    grad_xg_ptr,          # [T, B, G·H] out: dL/d(gate pre-activations) = dL/d(LN_hh output)
    dhw_ptr,              # [T, B, G·H] out: dL/d(h W_hhᵀ)[t]
    ln_hh_acc_ptr,        # [B, G·H]  Σ_t dL/d(LN_hh output)·x̂_hh (ACC)
    b_hh_acc_ptr,         # [B, G·H]  Σ_t dL/db_hh (GRU, ACC)
    ln_c_acc_ptr,         # [2, B, H] Σ_t dL/d(LN_c output)·x̂_c and Σ_t dL/d(LN_c output) (LSTM, ACC)
    lengths_ptr, starts_ptr, zoneout_ptr,
    T, B, H,
    CELL: tl.constexpr, G: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_RESETS: tl.constexpr,
    HAS_ZONEOUT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    ACC: tl.constexpr = accumulator_dtype(grad_out_ptr.dtype.element_ty)
    IS_LSTM: tl.constexpr = CELL == LSTM
    CS: tl.constexpr = 1 if IS_LSTM else 0
    rows64, row_ok, cols, col_ok, mask, st = _rows(B, H, BLOCK_B, BLOCK_H)
    GH = G * H
    BH = tl.cast(B, tl.int64) * H
    t64 = t.to(tl.int64)
    g_rows = rows64[:, None] * GH
    # dL/d(state entering t_next): to h0/c0 where t_next starts a segment, else the carry into step t.
    fresh = _next_starts(starts_ptr, t_next, B, rows64, row_ok, HAS_RESETS)
    carry = tl.load(dh_mm_ptr + st, mask=mask, other=0.0).to(ACC) + tl.load(dh_ptr + st, mask=mask, other=0.0)
    carry = move_to_initial(carry, h0_acc_ptr, st, mask, fresh, HAS_RESETS)
    if IS_LSTM:
        dc = move_to_initial(tl.load(dc_ptr + st, mask=mask, other=0.0), c0_acc_ptr, st, mask, fresh, HAS_RESETS)
    active = _active(t, rows64, row_ok, lengths_ptr, HAS_LENGTHS)
    live = mask & active  # padded rows read nothing of `saved` (whatever the forward wrote there)
    dh = carry + tl.load(grad_out_ptr + t64 * BH + st, mask=live, other=0.0).to(ACC)
    if HAS_ZONEOUT:
        z_at = zoneout_ptr + t64 * BH + st
        m_h = tl.load(z_at, mask=live, other=0.0).to(ACC)
        kept_h = m_h * dh
        dh = dh - kept_h
    else:
        kept_h = tl.zeros_like(dh)
    width = (4 + CS + G) * H + 1 + CS
    sv = saved_ptr + t64 * B * width + rows64[:, None] * width
    s0 = _gate(sv, 0, 4, H, cols, live, ACC)
    s1 = _gate(sv, 1, 4, H, cols, live, ACC)
    s2 = _gate(sv, 2, 4, H, cols, live, ACC)
    s3 = _gate(sv, 3, 4, H, cols, live, ACC)
    xs = sv + (4 + CS) * H
    x0 = _gate(xs, 0, G, H, cols, live, ACC)
    x1 = _gate(xs, 1, G, H, cols, live, ACC)
    x2 = _gate(xs, 2, G, H, cols, live, ACC)
    x3 = _gate(xs, 3, G, H, cols, live, ACC)
    rstd_at = saved_ptr + t64 * B * width + rows64 * width + (4 + CS + G) * H
    row_live = tl.reshape(active, [BLOCK_B])
    rstd_hh = tl.load(rstd_at, mask=row_live, other=0.0).to(ACC)
    if IS_LSTM:
        if HAS_ZONEOUT:
            m_c = tl.load(z_at + T * BH, mask=live, other=0.0).to(ACC)
            kept_c = m_c * dc
            dc_new = dc - kept_c
        else:
            kept_c = tl.zeros_like(dc)
            dc_new = dc
        # h̃ = o·tanh(γ_c x̂_c + β_c): through the tanh and LN_c to c̃
        xc = _gate(sv, 4, 5, H, cols, live, ACC)
        rstd_c = tl.load(rstd_at + 1, mask=row_live, other=0.0).to(ACC)
        gamma_c = _vector(ln_c_w_ptr, 0, 1, H, cols, col_ok, ACC)
        th = tanh(gamma_c * xc + _vector(ln_c_b_ptr, 0, 1, H, cols, col_ok, ACC))
        d_o = dh * th
        dy = tl.where(live, dh * s3 * (1.0 - th * th), 0.0)  # dL/d(LN_c output)
        _accumulate(ln_c_acc_ptr + rows64[:, None] * H, 0, 1, H, cols, dy * xc, mask)
        _accumulate(ln_c_acc_ptr + BH + rows64[:, None] * H, 0, 1, H, cols, dy, mask)
        dcx, _u1, _u2, _u3 = _normalize_backward(dy * gamma_c, dy, dy, dy, xc, xc, xc, xc, rstd_c, 1, H)
        dc_new += dcx
        c_prev = tl.load(c_prev_ptr + t64 * BH + st, mask=live, other=0.0).to(ACC)
        dp0 = dc_new * s2 * s0 * (1.0 - s0)   # i
        dp1 = dc_new * c_prev * s1 * (1.0 - s1)  # f
        dp2 = dc_new * s0 * (1.0 - s2 * s2)   # g
        dp3 = d_o * s3 * (1.0 - s3)           # o
        db0, db1, db2, db3 = dp0, dp1, dp2, dp3
        h_direct = kept_h
        dc_out = tl.where(active, dc_new * s1 + kept_c, dc)
    else:
        h_prev = tl.load(h_prev_ptr + t64 * BH + st, mask=live, other=0.0).to(ACC)
        dp2 = dh * (1.0 - s1) * (1.0 - s2 * s2)   # n
        dp1 = dh * (h_prev - s2) * s1 * (1.0 - s1)  # z
        dp0 = dp2 * s3 * s0 * (1.0 - s0)         # r
        dp3 = tl.zeros_like(dp0)
        db0, db1, db2, db3 = dp0, dp1, dp2 * s0, dp3  # the recurrent term's: b_n enters as r·b_n
        h_direct = dh * s1 + kept_h
    gx = grad_xg_ptr + t64 * BH * G + g_rows
    _gate_store(gx, 0, G, H, cols, tl.where(active, dp0, 0.0), mask)
    _gate_store(gx, 1, G, H, cols, tl.where(active, dp1, 0.0), mask)
    _gate_store(gx, 2, G, H, cols, tl.where(active, dp2, 0.0), mask)
    _gate_store(gx, 3, G, H, cols, tl.where(active, dp3, 0.0), mask)
    db0 = tl.where(live, db0, 0.0)
    db1 = tl.where(live, db1, 0.0)
    db2 = tl.where(live, db2, 0.0)
    db3 = tl.where(live, db3, 0.0)
    acc = ln_hh_acc_ptr + g_rows
    _accumulate(acc, 0, G, H, cols, db0 * x0, mask)
    _accumulate(acc, 1, G, H, cols, db1 * x1, mask)
    _accumulate(acc, 2, G, H, cols, db2 * x2, mask)
    _accumulate(acc, 3, G, H, cols, db3 * x3, mask)
    if not IS_LSTM:
        acc = b_hh_acc_ptr + g_rows
        _accumulate(acc, 0, G, H, cols, db0, mask)
        _accumulate(acc, 1, G, H, cols, db1, mask)
        _accumulate(acc, 2, G, H, cols, db2, mask)
    d0, d1, d2, d3 = _normalize_backward(db0 * _vector(ln_hh_w_ptr, 0, G, H, cols, col_ok, ACC),
                                         db1 * _vector(ln_hh_w_ptr, 1, G, H, cols, col_ok, ACC),
                                         db2 * _vector(ln_hh_w_ptr, 2, G, H, cols, col_ok, ACC),
                                         db3 * _vector(ln_hh_w_ptr, 3, G, H, cols, col_ok, ACC),
                                         x0, x1, x2, x3, rstd_hh, G, H)
    dw = dhw_ptr + t64 * BH * G + g_rows
    _gate_store(dw, 0, G, H, cols, d0, mask)
    _gate_store(dw, 1, G, H, cols, d1, mask)
    _gate_store(dw, 2, G, H, cols, d2, mask)
    _gate_store(dw, 3, G, H, cols, d3, mask)
    # Padded rows pass the whole carry on (their d(hW) is zero, so the host's next GEMM adds nothing).
    tl.store(dh_ptr + st, tl.where(active, h_direct, carry), mask=mask)
    if IS_LSTM:
        tl.store(dc_ptr + st, dc_out, mask=mask)
