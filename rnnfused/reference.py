"""Plain-PyTorch equations of one layer-direction: the truth every kernel is tested against.

Same conventions as the custom ops (csrc/ops.cpp): time-major input ``[T, B, I]``, one direction, optional
``lengths`` (int64 ``[B]``: row b runs steps ``t < lengths[b]``; padded steps give zero output and leave the state
alone) and ``reverse`` (run from ``t = T-1`` down to 0). Differentiable to any order by autograd.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["layer", "lstm_layer", "gru_layer", "rnn_layer", "lstm_step", "gru_step", "rnn_step", "lstm_cell_step",
           "gru_cell_step", "rnn_cell_step", "LAYER_NORM_EPS", "layer_norm_lstm_step",
           "layer_norm_gru_step", "layer_norm_recurrence"]


def lstm_step(xg: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Optional[Tensor],
              w_hr: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """One LSTM step from the input projection ``xg = x W_ihᵀ + b_ih`` [B, 4H]: returns (h', c')."""
    i, f, g, o = (xg + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    if w_hr is not None:
        h_new = F.linear(h_new, w_hr)
    return h_new, c_new


def gru_step(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Optional[Tensor]) -> Tensor:
    """One GRU step from ``xg = x W_ihᵀ + b_ih`` [B, 3H]; ``b_hn`` stays inside ``r·(W_hn h + b_hn)``."""
    xr, xz, xn = xg.chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def rnn_step(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Optional[Tensor], nonlinearity: str = "tanh") -> Tensor:
    """One Elman step: ``act(xg + h W_hhᵀ + b_hh)``, act = tanh or relu."""
    pre = xg + F.linear(h, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


# The steps with the one signature the cell registry (rnnfused/_cells.py) uses:
#   step(xg, state, w_hh, b_hh, w_hr) -> new state, a tuple whose first entry is h (the step's output).
def lstm_cell_step(xg: Tensor, state: Sequence[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                   w_hr: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    return lstm_step(xg, state[0], state[1], w_hh, b_hh, w_hr)


def gru_cell_step(xg: Tensor, state: Sequence[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                  w_hr: Optional[Tensor] = None) -> Tuple[Tensor]:
    return (gru_step(xg, state[0], w_hh, b_hh),)


def rnn_cell_step(xg: Tensor, state: Sequence[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                  w_hr: Optional[Tensor] = None, *, nonlinearity: str = "tanh") -> Tuple[Tensor]:
    return (rnn_step(xg, state[0], w_hh, b_hh, nonlinearity),)


def _scan(step: Callable[[Tensor, Sequence[Tensor]], Sequence[Tensor]], xg: Tensor, state: Sequence[Tensor],
          lengths: Optional[Tensor], reverse: bool, resets: Optional[Tensor] = None,
          zoneout: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[Tensor, ...]]:
    """Runs ``state = step(xg[t], state)`` over time; the output of a step is its first state (h). ``resets[t, b]``
    restarts row b from the initial state at the segment boundary before step t (in either direction);
    ``zoneout[k, t]`` [B, H] mixes state k: ``m·previous + (1 − m)·new``."""
    T = xg.shape[0]
    initial = state = tuple(state)
    outputs = [None] * T
    lengths = None if lengths is None else lengths.to(xg.device)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        boundary = t + 1 if reverse else t  # the reset flag that splits the sequence between t and its predecessor
        if resets is not None and 0 < boundary < T:
            fresh = resets[boundary].unsqueeze(1)  # [B, 1]
            state = tuple(torch.where(fresh, init, s) for init, s in zip(initial, state))
        new_state = tuple(step(xg[t], state))
        if zoneout is not None:
            new_state = tuple((new + zoneout[k, t] * (old - new)).to(new.dtype)
                              for k, (new, old) in enumerate(zip(new_state, state)))
        if lengths is not None:
            active = (lengths > t).unsqueeze(1)  # [B, 1]
            outputs[t] = torch.where(active, new_state[0], torch.zeros_like(new_state[0]))
            state = tuple(torch.where(active, new, old) for new, old in zip(new_state, state))
        else:
            outputs[t] = new_state[0]
            state = new_state
    return torch.stack(outputs), state


def layer(kind, input: Tensor, h0: Tensor, c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
          b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None, w_hr: Optional[Tensor] = None,
          lengths: Optional[Tensor] = None, reverse: bool = False, *,
          resets: Optional[Tensor] = None, zoneout: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
    """One layer-direction of the cell ``kind`` (a rnnfused._cells.CellKind: its ``step`` and ``has_cell_state``)
    -> (output [T, B, H_out], h_n [B, H_out]) plus c_n [B, H] for cells with a cell state. ``resets`` [T, B] bool
    and ``zoneout`` [S, T, B, H]: see rnnfused._inputs.LayerInputs."""
    xg = F.linear(input, w_ih, b_ih)  # [T, B, G*H]
    state = (h0, c0) if kind.has_cell_state else (h0,)
    out, state = _scan(lambda x, s: kind.step(x, s, w_hh, b_hh, w_hr), xg, state, lengths, reverse, resets,
                       zoneout)
    return (out, *state)


# LayerNorm cells (Ba et al. 2016, the form Haste implements; rnnfused/_layer_norm_ops.py): every step normalises the
# recurrent pre-activation h W_hhᵀ over all G·H units (biased variance, LAYER_NORM_EPS) and, for the LSTM, the new cell
# state before its tanh. The input side LN_ih(x W_ihᵀ) and the biases that add to it are in ``xg``.
#   step(xg, state, w_hh, b_hh, ln_hh_weight, ln_c_weight, ln_c_bias) -> new state
LAYER_NORM_EPS = 1e-5


def layer_norm_lstm_step(xg: Tensor, state: Sequence[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                         ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor],
                         ln_c_bias: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``gates = xg + LN_hh(h W_hhᵀ) (+ b_hh)``; ``c' = σ(f)·c + σ(i)·tanh(g)``; ``h' = σ(o)·tanh(LN_c(c'))``."""
    h, c = state
    hw = F.linear(h, w_hh)
    i, f, g, o = (xg + F.layer_norm(hw, hw.shape[-1:], ln_hh_weight, b_hh, LAYER_NORM_EPS)).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(F.layer_norm(c_new, c_new.shape[-1:], ln_c_weight, ln_c_bias,
                                                       LAYER_NORM_EPS))
    return h_new, c_new


def layer_norm_gru_step(xg: Tensor, state: Sequence[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                        ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor] = None,
                        ln_c_bias: Optional[Tensor] = None) -> Tuple[Tensor]:
    """``b = LN_hh(h W_hhᵀ) + b_hh``; then GRU's gates on ``xg`` and ``b`` (``n = tanh(xg_n + r·b_n)``)."""
    h = state[0]
    hw = F.linear(h, w_hh)
    xr, xz, xn = xg.chunk(3, dim=-1)
    hr, hz, hn = F.layer_norm(hw, hw.shape[-1:], ln_hh_weight, b_hh, LAYER_NORM_EPS).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def layer_norm_recurrence(kind, xg: Tensor, h0: Tensor, c0: Optional[Tensor], w_hh: Tensor, b_hh: Optional[Tensor],
                          ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor] = None,
                          ln_c_bias: Optional[Tensor] = None, lengths: Optional[Tensor] = None,
                          reverse: bool = False, *, resets: Optional[Tensor] = None,
                          zoneout: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
    """The recurrence of a LayerNorm cell (``kind.layer_norm_step``) from its gate inputs ``xg`` [T, B, G·H]
    -> (output [T, B, H], h_n [B, H]) plus c_n [B, H] for the LSTM. Lengths, reverse, resets and zoneout as for
    :func:`layer`."""
    state = (h0, c0) if kind.has_cell_state else (h0,)
    out, state = _scan(lambda x, s: kind.layer_norm_step(x, s, w_hh, b_hh, ln_hh_weight, ln_c_weight, ln_c_bias),
                       xg, state, lengths, reverse, resets, zoneout)
    return (out, *state)


class _Cell(NamedTuple):  # what layer() reads of a cell kind
    step: Callable
    has_cell_state: bool


def lstm_layer(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
               b_hh: Optional[Tensor] = None, w_hr: Optional[Tensor] = None, lengths: Optional[Tensor] = None,
               reverse: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """-> output [T, B, H_out], h_n [B, H_out], c_n [B, H]."""
    return layer(_Cell(lstm_cell_step, True), input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse)


def gru_layer(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
              b_hh: Optional[Tensor] = None, lengths: Optional[Tensor] = None,
              reverse: bool = False) -> Tuple[Tensor, Tensor]:
    """-> output [T, B, H], h_n [B, H]."""
    return layer(_Cell(gru_cell_step, False), input, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse)


def rnn_layer(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
              b_hh: Optional[Tensor] = None, lengths: Optional[Tensor] = None, reverse: bool = False,
              nonlinearity: str = "tanh") -> Tuple[Tensor, Tensor]:
    """-> output [T, B, H], h_n [B, H]."""
    step = functools.partial(rnn_cell_step, nonlinearity=nonlinearity)
    return layer(_Cell(step, False), input, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse)
