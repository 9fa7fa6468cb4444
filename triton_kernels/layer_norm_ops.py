"""Registers the Triton family of the LayerNorm LSTM/GRU ops: rnnfused::layernorm_<cell>_triton and
rnnfused::layernorm_<cell>_backward_triton (schemas, equations and the ``saved`` layout: rnnfused/_layer_norm_ops.py).

As for the plain cells (ops.py): each is a torch.library.triton_op whose body checks its arguments, runs torch ops
around one opaque recurrence custom op (the per-step loop of layer_norm_launch.py: one torch.compile node for any
T), and the family's fakes, autograd (BPTT through the backward op) and autocast come from
``register_layer_norm_family("_triton")``. Backward's big reductions run after the sweep: grad_w_hh =
Σ_t dL/d(hW)[t]ᵀ h_{t-1} as one GEMM, and the LayerNorm/bias gradients as sums of per-row accumulators.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.library import triton_op

from rnnfused._cells import CELL_KINDS, CellKind, cell_state_dtype
from rnnfused._layer_norm_ops import (LAYER_NORM_KINDS, LayerNormInputs, backward_arg_names, forward_arg_names,
                                      forward_output_names, grad_names, inputs_from_forward_args, op_name,
                                      register_layer_norm_family, saved_width, schema_types)
from rnnfused._layer_norm_validation import check_layer_norm_inputs
from rnnfused._validation import check_op_lengths, check_saved

from .layer import previous_states, reset_starts
from .layer_norm_launch import backward_recurrence, forward_recurrence
from .op_signature import schema_string, with_signature

SUFFIX = "_triton"


# ------------------------------------------------------------------------------------- opaque recurrence custom ops
@torch.library.custom_op("rnnfused::_triton_layernorm_forward_recurrence", mutates_args=())
def forward_recurrence_op(cell: str, xg: Tensor, h0: Tensor, c0: Optional[Tensor], w_hh: Tensor,
                          b_hh: Optional[Tensor], ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor],
                          ln_c_bias: Optional[Tensor], lengths: Optional[Tensor], starts: Optional[Tensor],
                          zoneout: Optional[Tensor], reverse: bool,
                          train: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> output, h_n, c_n ([0] but LSTM), saved ([0] unless train), cells ([0] unless LSTM and train)."""
    return tuple(forward_recurrence(CELL_KINDS[cell], xg, h0, c0, w_hh, b_hh, ln_hh_weight, ln_c_weight, ln_c_bias,
                                    lengths, starts, zoneout, reverse, train))


@forward_recurrence_op.register_fake
def _(cell, xg, h0, c0, w_hh, b_hh, ln_hh_weight, ln_c_weight, ln_c_bias, lengths, starts, zoneout, reverse, train):
    kind = CELL_KINDS[cell]
    T, B, GH = xg.shape
    H = GH // kind.gates
    cdt = cell_state_dtype(xg.dtype)
    lstm = kind.has_cell_state
    return (xg.new_empty(T, B, H), xg.new_empty(B, H), xg.new_empty(B, H) if lstm else xg.new_empty(0),
            xg.new_empty(T, B, saved_width(kind, H), dtype=cdt) if train else xg.new_empty(0, dtype=cdt),
            xg.new_empty(T, B, H, dtype=cdt) if train and lstm else xg.new_empty(0, dtype=cdt))


@torch.library.custom_op("rnnfused::_triton_layernorm_backward_recurrence", mutates_args=())
def backward_recurrence_op(cell: str, grad_output: Tensor, grad_h_n: Tensor, grad_c_n: Optional[Tensor],
                           w_hh: Tensor, ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor],
                           ln_c_bias: Optional[Tensor], lengths: Optional[Tensor], starts: Optional[Tensor],
                           zoneout: Optional[Tensor], reverse: bool, saved: Tensor, c_prev_seq: Optional[Tensor],
                           h_prev_seq: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> grad_xg, dhw, grad_h0, grad_c0, ln_hh_acc, b_hh_acc, ln_c_acc (layer_norm_launch.LayerNormBackward)."""
    return tuple(backward_recurrence(CELL_KINDS[cell], grad_output, grad_h_n, grad_c_n, w_hh, ln_hh_weight,
                                     ln_c_weight, ln_c_bias, lengths, starts, zoneout, reverse, saved, c_prev_seq,
                                     h_prev_seq))


@backward_recurrence_op.register_fake
def _(cell, grad_output, grad_h_n, grad_c_n, w_hh, ln_hh_weight, ln_c_weight, ln_c_bias, lengths, starts, zoneout,
      reverse, saved, c_prev_seq, h_prev_seq):
    kind = CELL_KINDS[cell]
    T, B, H = grad_output.shape
    GH = w_hh.shape[0]
    acc = cell_state_dtype(grad_output.dtype)
    lstm = kind.has_cell_state
    new = grad_output.new_empty
    return (new(T, B, GH), new(T, B, GH), new(B, H), new(B, H) if lstm else new(0), new(B, GH, dtype=acc),
            new(B, GH, dtype=acc) if kind.split_recurrent_grad else new(0, dtype=acc),
            new(2, B, H, dtype=acc) if lstm else new(0, dtype=acc))


# ------------------------------------------------------------------------------------------------------ op bodies
def _checked(op: str, kind: CellKind, x: LayerNormInputs, like: Tensor, steps: int, batch: int) -> LayerNormInputs:
    """Checks (RuntimeError naming the op and the argument) -> x with contiguous tensors and lengths on the device."""
    try:
        check_layer_norm_inputs(kind, x, like, steps, batch)
    except ValueError as exc:
        raise RuntimeError(f"{op}: {exc}") from None
    check_op_lengths(op, x.lengths, batch, steps, like.device)
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return x._replace(**{f: c(getattr(x, f)) for f in ("xg", "h0", "c0", "w_hh", "b_hh", "ln_hh_weight",
                                                       "ln_c_weight", "ln_c_bias", "resets", "zoneout")},
                      lengths=None if x.lengths is None else x.lengths.to(like.device))


def _sizes(t) -> Tuple[int, int]:
    """(T, B) of a 3-D tensor; (1, 1) otherwise (the checks then name what is wrong with it)."""
    return (t.shape[0], t.shape[1]) if isinstance(t, Tensor) and t.dim() == 3 else (1, 1)


def layer_norm_forward(kind: CellKind, x: LayerNormInputs) -> tuple:
    """The forward op's outputs (forward_output_names)."""
    op = f"rnnfused::{op_name(kind, SUFFIX)}"
    x = _checked(op, kind, x, x.xg, *_sizes(x.xg))
    r = forward_recurrence_op(kind.name, x.xg, x.h0, x.c0, x.w_hh, x.b_hh, x.ln_hh_weight, x.ln_c_weight,
                              x.ln_c_bias, x.lengths, reset_starts(x.resets, x.reverse), x.zoneout, x.reverse,
                              x.train)
    outs = dict(zip(("output", "h_n", "c_n", "saved", "cells"), r))
    return tuple(outs[n] for n in forward_output_names(kind))


def layer_norm_backward(kind: CellKind, *args) -> tuple:
    """The backward op's gradients (grad_names)."""
    op = f"rnnfused::{op_name(kind, SUFFIX, backward=True)}"
    a = dict(zip(backward_arg_names(kind), args))
    output = a["output"]
    if not isinstance(output, Tensor) or output.dim() != 3 or not output.dtype.is_floating_point:
        got = f"{output.dtype} {list(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
        raise RuntimeError(f"{op}: output must be a 3-D floating tensor [seq_len, batch, hidden_size], got {got}")
    x = LayerNormInputs(None, a["h0"], a.get("c0"), a["w_hh"], None, a["ln_hh_weight"], a.get("ln_c_weight"),
                        a.get("ln_c_bias"), a["lengths"], a["reverse"], resets=a["resets"], zoneout=a["zoneout"])
    T, B = _sizes(output)
    x = _checked(op, kind, x, output, T, B)
    GH, H = x.w_hh.shape
    dt, dev, cdt = output.dtype, output.device, cell_state_dtype(output.dtype)
    lstm = kind.has_cell_state
    output = check_saved(op, "output", output, (T, B, H), dt, dev)
    grad_output = check_saved(op, "grad_output", a["grad_output"], (T, B, H), dt, dev)
    grad_h_n = check_saved(op, "grad_h_n", a["grad_h_n"], (B, H), dt, dev)
    saved = check_saved(op, "saved", a["saved"], (T, B, saved_width(kind, H)), cdt, dev)
    grad_c_n = check_saved(op, "grad_c_n", a["grad_c_n"], (B, H), dt, dev) if lstm else None
    cells = check_saved(op, "cells", a["cells"], (T, B, H), cdt, dev) if lstm else None
    starts = reset_starts(x.resets, x.reverse)                                   # [T, B] bool, or None
    h_prev_seq = previous_states(output, x.h0, x.lengths, x.reverse, starts)     # [T, B, H]
    # c entering each step: cells carry c through padded steps, so lengths need no special case here.
    c_prev_seq = previous_states(cells, x.c0.to(cdt), None, x.reverse, starts) if lstm else None
    r = backward_recurrence_op(kind.name, grad_output, grad_h_n, grad_c_n, x.w_hh, x.ln_hh_weight, x.ln_c_weight,
                               x.ln_c_bias, x.lengths, starts, x.zoneout, x.reverse, saved, c_prev_seq, h_prev_seq)
    grad_xg, dhw, grad_h0, grad_c0, ln_hh_acc, b_hh_acc, ln_c_acc = r
    grads = dict(xg=grad_xg, h0=grad_h0, c0=grad_c0,
                 w_hh=torch.mm(dhw.view(T * B, GH).t(), h_prev_seq.view(T * B, H)),   # Σ_t d(hW)[t]ᵀ h_{t-1}
                 ln_hh_weight=ln_hh_acc.sum(0).to(dt))
    if kind.split_recurrent_grad:
        grads["b_hh"] = b_hh_acc.sum(0).to(dt)
    if lstm:
        grads["ln_c_weight"], grads["ln_c_bias"] = ln_c_acc[0].sum(0).to(dt), ln_c_acc[1].sum(0).to(dt)
    return tuple(grads[n] for n in grad_names(kind))


# ----------------------------------------------------------------------------------------------------- registration
def _register(kind: CellKind) -> None:
    def forward(*args):
        return layer_norm_forward(kind, inputs_from_forward_args(kind, args))

    def backward(*args):
        return layer_norm_backward(kind, *args)

    for backward_op, fn, names, n_out in ((False, forward, forward_arg_names(kind), len(forward_output_names(kind))),
                                          (True, backward, backward_arg_names(kind), len(grad_names(kind)))):
        typed = schema_types(names)
        triton_op(f"rnnfused::{op_name(kind, SUFFIX, backward_op)}", with_signature(fn, typed, n_out),
                  mutates_args=(), schema=schema_string(typed, n_out))


for _kind in LAYER_NORM_KINDS.values():
    _register(_kind)
register_layer_norm_family(SUFFIX)
