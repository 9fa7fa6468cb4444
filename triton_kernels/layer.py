"""The bodies of the Triton layer ops: argument checks, the big GEMMs, and one recurrence call.

Everything here is traceable by torch.compile (it runs under fake/functional tensors when a triton_op is
decomposed): torch ops and one opaque recurrence custom op (recurrence_ops.py) for either path.
Semantics and saved-tensor formats are those of the C++ ops (csrc/sequence/driver.h).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from rnnfused._cells import CellKind, cell_state_dtype
from rnnfused._inputs import LayerInputs
from rnnfused._validation import check_layer_inputs, check_op_lengths, check_saved

from . import recurrence_ops  # noqa: F401  (registers rnnfused::_triton_*_recurrence)
from .backward_launch import BackwardResult
from .dispatch import choose_path
from .forward_launch import ForwardResult
from .launch_common import interpreted


def _checked(op: str, kind: CellKind, x: LayerInputs) -> LayerInputs:
    try:
        check_layer_inputs(kind, x)
    except ValueError as exc:
        raise RuntimeError(f"{op}: {exc}") from None
    check_op_lengths(op, x.lengths, x.input.shape[1], x.input.shape[0], x.input.device)
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return x._replace(input=c(x.input), h0=c(x.h0), c0=c(x.c0), w_ih=c(x.w_ih), w_hh=c(x.w_hh), b_ih=c(x.b_ih),
                      b_hh=c(x.b_hh), w_hr=c(x.w_hr), zoneout=c(x.zoneout))


def reset_starts(resets: Optional[Tensor], reverse: bool) -> Optional[Tensor]:
    """[T, B] bool: step t of row b starts from the initial state because a reset splits the sequence there
    (driver.cpp's reset_starts): resets[t] for t > 0 forward, resets[t + 1] for t < T - 1 in reverse. None without
    resets."""
    if resets is None:
        return None
    none = torch.zeros_like(resets[:1])  # [1, B]: the first processed step starts from init anyway
    return torch.cat([resets[1:], none] if reverse else [none, resets[1:]])


def previous_states(seq: Tensor, init: Tensor, lengths: Optional[Tensor], reverse: bool,
                    starts: Optional[Tensor] = None) -> Tensor:
    """[T, B, K]: the state each step started from (driver.cpp's previous_states); init at the `starts` steps."""
    prev = torch.cat([seq[1:], init.unsqueeze(0)] if reverse else [init.unsqueeze(0), seq[:-1]])
    from_init = starts  # [T, B] bool, or None
    if reverse and lengths is not None:
        # In reverse, row b's first step is t = lengths[b]-1, which starts from init.
        from_init = torch.arange(seq.shape[0], device=seq.device).unsqueeze(1) == (lengths - 1).unsqueeze(0)
    return prev if from_init is None else torch.where(from_init.unsqueeze(2), init.unsqueeze(0), prev)


def layer_forward(kind: CellKind, x: LayerInputs) -> tuple:
    """The forward op's outputs: LSTM (output, h_n, c_n, saved, cells), GRU (output, h_n, saved), RNN (output, h_n)."""
    op = f"rnnfused::{kind.name}_triton"
    x = _checked(op, kind, x)
    T, B, I = x.input.shape
    GH = x.w_hh.shape[0]
    x2d = x.input.view(T * B, I)
    # [T, B, G·H]  input projection of every step, with b_ih: one GEMM
    xg = (torch.mm(x2d, x.w_ih.t()) if x.b_ih is None else torch.addmm(x.b_ih, x2d, x.w_ih.t())).view(T, B, GH)
    lengths = None if x.lengths is None else x.lengths.to(x.input.device)  # no copy when already there
    starts = reset_starts(x.resets, x.reverse)                             # [T, B] bool, or None
    choice = choose_path(x.w_hr is not None, interpreted())
    r = ForwardResult(*torch.ops.rnnfused._triton_forward_recurrence(choice.path, kind.name, xg, x.h0, x.c0, x.w_hh,
                                                                      x.b_hh, x.w_hr, lengths, starts, x.reverse,
                                                                      x.zoneout))
    saved, cells = r.saved, r.cells
    if not x.train:
        # Inference: the schema returns nothing for backward (the kernels have no inference variant: they wrote it).
        saved, cells = x.input.new_empty(0), x.input.new_empty(0, dtype=r.cells.dtype)
    if kind.has_cell_state:
        # A copy, never a view of `cells`: op outputs must not alias each other.
        c_n = r.cells[0 if x.reverse else -1].to(x.input.dtype, copy=True)
        return r.output, r.h_n, c_n, saved, cells
    if kind.saved_per_unit:
        return r.output, r.h_n, saved
    return r.output, r.h_n


def layer_backward(kind: CellKind, grad_output: Tensor, grad_h_n: Tensor, grad_c_n: Optional[Tensor],
                   x: LayerInputs, output: Tensor, saved: Optional[Tensor], cells: Optional[Tensor]) -> tuple:
    """The backward op's gradients, in the schema's order (LSTM: 8, others: 6)."""
    op = f"rnnfused::{kind.name}_backward_triton"
    x = _checked(op, kind, x)
    T, B, I = x.input.shape
    GH, K = x.w_hh.shape
    H = GH // kind.gates
    dt, dev = x.input.dtype, x.input.device
    output = check_saved(op, "output", output, (T, B, K), dt, dev)
    grad_output = check_saved(op, "grad_output", grad_output, (T, B, K), dt, dev)
    grad_h_n = check_saved(op, "grad_h_n", grad_h_n, (B, K), dt, dev)
    saved = (check_saved(op, "saved", saved, (T, B, kind.saved_per_unit * H), dt, dev) if kind.saved_per_unit
             else x.input.new_empty(T, B, 0))
    if kind.has_cell_state:
        grad_c_n = check_saved(op, "grad_c_n", grad_c_n, (B, H), dt, dev)
        cells = check_saved(op, "cells", cells, (T, B, H), cell_state_dtype(dt), dev)
    else:
        cells = x.input.new_empty(0, B, H, dtype=cell_state_dtype(dt))
    lengths = None if x.lengths is None else x.lengths.to(dev)
    starts = reset_starts(x.resets, x.reverse)                              # [T, B] bool, or None
    h_prev_seq = previous_states(output, x.h0, lengths, x.reverse, starts)  # [T, B, K]
    choice = choose_path(x.w_hr is not None, interpreted())
    r = BackwardResult(*torch.ops.rnnfused._triton_backward_recurrence(
        choice.path, kind.name, grad_output, grad_h_n, grad_c_n, x.c0, x.w_hh, x.w_hr, lengths, starts, x.reverse,
        output, saved, cells, h_prev_seq, x.zoneout))
    dgx = r.dgx.view(T * B, GH)                                          # [T·B, G·H]
    dgh_seq = r.dgh if kind.split_recurrent_grad else r.dgx                     # [T, B, G·H]
    dgh = dgh_seq.view(T * B, GH)
    # + dgates_0 W_hh (the segment starts after the first step are in grad_h_last already)
    grad_h0 = torch.addmm(r.grad_h_last, dgh_seq[-1 if x.reverse else 0], x.w_hh)
    grads = [torch.mm(dgx, x.w_ih).view(T, B, I), grad_h0]
    if kind.has_cell_state:
        grads.append(r.grad_c0.to(dt, copy=True))
    grads += [torch.mm(dgx.t(), x.input.view(T * B, I)), torch.mm(dgh.t(), h_prev_seq.view(T * B, K)), dgx.sum(0),
              dgh.sum(0)]
    if kind.has_cell_state:
        if x.w_hr is None:
            grads.append(x.input.new_empty(0))
        else:
            # r_t = σ(o)·tanh(c_t), recomputed; zero on padded rows, so their dh_t does not count.
            r_seq = (saved[..., 3 * H:].to(cells.dtype) * cells.tanh()).to(dt).view(T * B, H)
            grads.append(torch.mm(r.dh_seq.view(T * B, K).t(), r_seq))
    return tuple(grads)
