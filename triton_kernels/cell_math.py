"""Per-element gate math of one recurrent step, in Triton: the equations of csrc/common/cell_math.h, written once.

Every kernel (per-step and persistent, forward and backward) calls :func:`cell_forward` / :func:`cell_backward`,
which pick the cell by the compile-time ``CELL`` id. Conventions as in cell_math.h:
    x0..x3  gate pre-activations from the input projection  (x W_ihᵀ + b_ih), block g of G
    g0..g3  gate pre-activations from the recurrence        (h W_hhᵀ + b_hh)
    s0..s3  what backward needs per unit (LSTM σi, σf, tanh g, σo; GRU σr, σz, n, hn; Elman RNN: nothing)
Unused gate slots (G < 4) are ignored by the cell and compiled away. Arithmetic is float32 (float64 for float64).
"""
import triton
import triton.language as tl

from rnnfused._cells import CELL_IDS

# Cell ids (compile-time), from the cell registry (rnnfused._cells.CELL_IDS).
LSTM = tl.constexpr(CELL_IDS["lstm"])
GRU = tl.constexpr(CELL_IDS["gru"])
RNN_TANH = tl.constexpr(CELL_IDS["rnn_tanh"])
RNN_RELU = tl.constexpr(CELL_IDS["rnn_relu"])


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # Through exp, so the same code runs compiled and in the interpreter (which lacks libdevice); no overflow for
    # large |x|, absolute error ~1 ulp of 1.
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


# ------------------------------------------------------------------------------------------------------ forward
@triton.jit
def lstm_candidate_cell(i, f, g, c_prev):
    """c' = σf·c_prev + σi·tanh g from the activations: the forward's new cell state, and what the backward of
    zoneout recomputes from the saved ones (the forward keeps only the zoned-out c_t; driver.h lstm_candidate_cells)."""
    return f * c_prev + i * g


@triton.jit
def lstm_forward(x0, x1, x2, x3, g0, g1, g2, g3, c_prev):
    """-> (out = σ(o)·tanh(c'), c', σi, σf, tanh g, σo)"""
    i = sigmoid(x0 + g0)
    f = sigmoid(x1 + g1)
    g = tanh(x2 + g2)
    o = sigmoid(x3 + g3)
    c_new = lstm_candidate_cell(i, f, g, c_prev)
    return o * tanh(c_new), c_new, i, f, g, o


@triton.jit
def gru_forward(x0, x1, x2, g0, g1, g2, h_prev):
    """g2 = W_hn h + b_hn stays inside r·(…). -> (h', σr, σz, n, hn)"""
    r = sigmoid(x0 + g0)
    z = sigmoid(x1 + g1)
    n = tanh(x2 + r * g2)
    return (1.0 - z) * n + z * h_prev, r, z, n, g2


@triton.jit
def elman_forward(x0, g0, RELU: tl.constexpr):
    pre = x0 + g0
    if RELU:
        out = tl.maximum(pre, 0.0)
    else:
        out = tanh(pre)
    return out


@triton.jit
def cell_forward(CELL: tl.constexpr, x0, x1, x2, x3, g0, g1, g2, g3, c_prev, h_prev):
    """-> (out, c_new, s0, s1, s2, s3); c_new is c_prev and s* are zeros where the cell has none."""
    zero = tl.zeros_like(x0)
    if CELL == LSTM:
        out, c_new, s0, s1, s2, s3 = lstm_forward(x0, x1, x2, x3, g0, g1, g2, g3, c_prev)
    elif CELL == GRU:
        out, s0, s1, s2, s3 = gru_forward(x0, x1, x2, g0, g1, g2, h_prev)
        c_new = c_prev
    else:
        out = elman_forward(x0, g0, CELL == RNN_RELU)
        c_new, s0, s1, s2, s3 = c_prev, zero, zero, zero, zero
    return out, c_new, s0, s1, s2, s3


# ----------------------------------------------------------------------------------------------------- backward
@triton.jit
def lstm_backward(dout, dc, s0, s1, s2, s3, c, c_prev):
    """dout: dL/d(σ(o)tanh(c')), dc: dL/dc' from later steps. -> (di, df, dg, do, dc_prev); dgx = dgh."""
    i, f, g, o = s0, s1, s2, s3
    tc = tanh(c)
    dc_total = dc + dout * o * (1.0 - tc * tc)
    di = dc_total * g * i * (1.0 - i)
    df = dc_total * c_prev * f * (1.0 - f)
    dg = dc_total * i * (1.0 - g * g)
    d_o = dout * tc * o * (1.0 - o)
    return di, df, dg, d_o, dc_total * f


@triton.jit
def gru_backward(dout, s0, s1, s2, s3, h_prev):
    """-> (dr, dz, dn) w.r.t. the input-projection pre-activations, dn·r for the recurrent n block, z·dout."""
    r, z, n, hn = s0, s1, s2, s3
    dn = dout * (1.0 - z) * (1.0 - n * n)
    dz = dout * (h_prev - n) * z * (1.0 - z)
    dr = dn * hn * r * (1.0 - r)
    return dr, dz, dn, dn * r, dout * z


@triton.jit
def elman_backward(dout, out, RELU: tl.constexpr):
    if RELU:
        d = tl.where(out > 0, dout, 0.0)
    else:
        d = dout * (1.0 - out * out)
    return d


@triton.jit
def cell_backward(CELL: tl.constexpr, dout, dc, s0, s1, s2, s3, c, c_prev, h_prev, out):
    """-> (dx0..dx3: dL/d input-projection pre-activations, dh2: dL/d recurrent n pre-activation (GRU; equals dx2
    otherwise), dc_prev, dh_direct: the part of dL/dh_{t-1} that skips W_hh)."""
    zero = tl.zeros_like(dout)
    if CELL == LSTM:
        dx0, dx1, dx2, dx3, dc_prev = lstm_backward(dout, dc, s0, s1, s2, s3, c, c_prev)
        dh2, dh_direct = dx2, zero
    elif CELL == GRU:
        dx0, dx1, dx2, dh2, dh_direct = gru_backward(dout, s0, s1, s2, s3, h_prev)
        dx3, dc_prev = zero, dc
    else:
        dx0 = elman_backward(dout, out, CELL == RNN_RELU)
        dx1, dx2, dx3, dh2, dc_prev, dh_direct = zero, zero, zero, zero, dc, zero
    return dx0, dx1, dx2, dx3, dh2, dc_prev, dh_direct
