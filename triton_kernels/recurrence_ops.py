"""The recurrence of both paths as opaque custom ops: rnnfused::_triton_forward_recurrence / _backward_recurrence.

Why opaque: the per-step path is a Python loop of T launches. Inside a triton_op body that torch.compile traces,
that loop would be unrolled into T graph nodes and re-traced (and recompiled) for every new T. As a custom op
with a fake function it is one graph node for any T, so a compiled graph runs every sequence length. The persistent
path is one launch, but it must be cooperative, which Inductor's wrap_triton path would drop
(launch_common.PERSISTENT_LAUNCH_OPTIONS); inside the op it launches exactly as in eager. `path` is "stepwise" or
"persistent" (dispatch.choose_path decides, outside the op). `starts` is [T, B] bool (layer.reset_starts: the steps
that start from h0/c0 because of a reset) or None; `zoneout` is [S, T, B, H] keep-masks in the cell dtype or None.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from rnnfused._cells import CELL_KINDS, cell_state_dtype

from .backward_launch import backward_recurrence
from .dispatch import PathChoice
from .forward_launch import forward_recurrence



def _choice(path: str) -> PathChoice:
    if path not in ("stepwise", "persistent"):
        raise ValueError(f"path must be 'stepwise' or 'persistent', got {path!r}")
    return PathChoice(path, "chosen by dispatch.choose_path")


@torch.library.custom_op("rnnfused::_triton_forward_recurrence", mutates_args=())
def forward_recurrence_op(path: str, cell: str, xg: Tensor, h0: Tensor, c0: Optional[Tensor], w_hh: Tensor,
                          b_hh: Optional[Tensor], w_hr: Optional[Tensor], lengths: Optional[Tensor],
                          starts: Optional[Tensor], reverse: bool,
                          zoneout: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> output [T, B, K], h_n [B, K], cells [T, B, H] (LSTM, else [0, B, H]), saved [T, B, S·H]."""
    return tuple(forward_recurrence(CELL_KINDS[cell], _choice(path), xg, h0, c0, w_hh, b_hh, w_hr, lengths,
                                    reverse, starts, zoneout))


@forward_recurrence_op.register_fake
def _(path, cell, xg, h0, c0, w_hh, b_hh, w_hr, lengths, starts, reverse, zoneout):
    kind = CELL_KINDS[cell]
    T, B, GH = xg.shape
    H, K = GH // kind.gates, w_hh.shape[1]
    cells = xg.new_empty(T if kind.has_cell_state else 0, B, H, dtype=cell_state_dtype(xg.dtype))
    return xg.new_empty(T, B, K), xg.new_empty(B, K), cells, xg.new_empty(T, B, kind.saved_per_unit * H)


@torch.library.custom_op("rnnfused::_triton_backward_recurrence", mutates_args=())
def backward_recurrence_op(path: str, cell: str, grad_output: Tensor, grad_h_n: Tensor, grad_c_n: Optional[Tensor],
                           c0: Optional[Tensor], w_hh: Tensor, w_hr: Optional[Tensor], lengths: Optional[Tensor],
                           starts: Optional[Tensor], reverse: bool, output: Tensor, saved: Tensor, cells: Tensor,
                           h_prev_seq: Tensor,
                           zoneout: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> dgx [T, B, G·H], dgh (GRU, else [0]), grad_h_last [B, K] (with what reached h0 at segment starts),
    grad_c0 (LSTM, cell dtype), dh_seq (proj)."""
    return tuple(backward_recurrence(CELL_KINDS[cell], _choice(path), grad_output, grad_h_n, grad_c_n, c0,
                                     w_hh, w_hr, lengths, reverse, output, saved, cells, h_prev_seq, starts,
                                     zoneout))


@backward_recurrence_op.register_fake
def _(path, cell, grad_output, grad_h_n, grad_c_n, c0, w_hh, w_hr, lengths, starts, reverse, output, saved, cells,
      h_prev_seq, zoneout):
    kind = CELL_KINDS[cell]
    T, B, K = output.shape
    GH = w_hh.shape[0]
    H = GH // kind.gates
    lstm = kind.has_cell_state
    dgh = output.new_empty(T, B, GH) if kind.split_recurrent_grad else output.new_empty(0)
    grad_c0 = output.new_empty(B if lstm else 0, H, dtype=cell_state_dtype(output.dtype))
    dh_seq = output.new_empty(T, B, K) if w_hr is not None else output.new_empty(0)
    return output.new_empty(T, B, GH), dgh, output.new_empty(B, K), grad_c0, dh_seq
