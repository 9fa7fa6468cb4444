"""The ops of the LayerNorm LSTM/GRU recurrence (Ba et al. 2016): argument lists, fakes and autograd, for every
backend's family (the C++ ops with suffix "", csrc/sequence/layer_norm_ops.cpp; the Triton ops with "_triton").

A LayerNorm layer-direction is split where the sequence splits: everything that is not sequential stays outside the
op as plain, differentiable torch ops (:func:`layer_norm_gates`: one GEMM for x W_ihᵀ over all steps, its LayerNorm,
and every bias that only adds to the gates), and the op runs the recurrence from those gate inputs ``xg``:

  rnnfused::layernorm_<cell><suffix>(Tensor xg, Tensor h0, [Tensor c0], Tensor w_hh, [Tensor? b_hh],
      Tensor ln_hh_weight, [Tensor ln_c_weight, Tensor ln_c_bias], Tensor? lengths, bool reverse, bool train=True,
      Tensor? resets=None, Tensor? zoneout=None) -> (output, h_n, [c_n], saved, [cells])
  rnnfused::layernorm_<cell>_backward<suffix>(Tensor grad_output, Tensor grad_h_n, [Tensor grad_c_n], Tensor h0,
      [Tensor c0], Tensor w_hh, Tensor ln_hh_weight, [Tensor ln_c_weight, Tensor ln_c_bias], Tensor? lengths,
      bool reverse, Tensor output, Tensor saved, [Tensor cells], Tensor? resets=None, Tensor? zoneout=None)
      -> (grad_xg, grad_h0, [grad_c0], grad_w_hh, [grad_b_hh], grad_ln_hh_weight, [grad_ln_c_weight, grad_ln_c_bias])

[c0], [c_n], [cells], [ln_c_*]: cells with a cell state (the LSTM); [b_hh]: cells whose recurrent term is kept apart
(``split_recurrent_grad``: GRU's ``r·(LN_hh(h W_hnᵀ) + b_hn)``; the LSTM's recurrent bias adds to the gates and is in
``xg``). Each step (reference.layer_norm_lstm_step / layer_norm_gru_step):
  LSTM  gates = xg_t + γ_hh·x̂(h W_hhᵀ);  c̃ = σ(f)·c + σ(i)·tanh(g);  h̃ = σ(o)·tanh(γ_c·x̂(c̃) + β_c)
  GRU   b = γ_hh·x̂(h W_hhᵀ) + b_hh;  r, z = σ(xg_r,z + b_r,z);  n = tanh(xg_n + r·b_n);  h̃ = (1 − z)·n + z·h
with x̂(v) = (v − mean(v))·rstd(v) over the whole vector, rstd = 1/sqrt(biased var + LAYER_NORM_EPS); lengths,
resets and zoneout as for the plain cells (rnnfused/_inputs.py).

``saved`` [T, B, W] in the cell dtype (float32 for half/bfloat16 input), per step and row (processing order
irrelevant: indexed by t), W = saved_width(kind, H):
  LSTM  [σ(i), σ(f), tanh(g), σ(o) | x̂(c̃) | x̂(h W_hhᵀ) | rstd_hh, rstd_c]      4H + H + 4H + 2
  GRU   [r, z, n, b_n | x̂(h W_hhᵀ) | rstd_hh]                                 4H + 3H + 1
on padded steps (t ≥ lengths[b]) whatever the kernel wrote (backward does not read them). ``cells`` [T, B, H] (cell
dtype): the LSTM's cell state c_t after zoneout, c_{t-1} carried through padded steps. train=False: saved and cells
are [0].
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import reference
from ._autocast import register_autocast
from ._autograd import backward_op_gradients, differentiable_gradients, state_gradients
from ._cells import CELL_KINDS, CellKind, cell_state_dtype
from ._extension import extension_loaded

__all__ = ["LayerNormInputs", "LAYER_NORM_KINDS", "op_name", "saved_width", "forward_arg_names",
           "backward_arg_names", "forward_output_names", "grad_names", "layer_norm_gates", "reference_outputs",
           "register_layer_norm_family", "layer_norm_op"]

LAYER_NORM_KINDS: Dict[str, CellKind] = {name: k for name, k in CELL_KINDS.items() if k.layer_norm_step is not None}


class LayerNormInputs(NamedTuple):
    xg: Tensor                     # [T, B, G*H] gate inputs: LN_ih(x W_ihᵀ) + the biases outside the recurrence
    h0: Tensor                     # [B, H]
    c0: Optional[Tensor]           # [B, H] (LSTM)
    w_hh: Tensor                   # [G*H, H]
    b_hh: Optional[Tensor]         # [G*H] recurrent bias (GRU: β_hh + b_hh) or None
    ln_hh_weight: Tensor           # [G*H] γ_hh
    ln_c_weight: Optional[Tensor]  # [H] γ_c (LSTM)
    ln_c_bias: Optional[Tensor]    # [H] β_c (LSTM)
    lengths: Optional[Tensor]      # [B] int64, or None
    reverse: bool
    train: bool = True
    resets: Optional[Tensor] = None   # [T, B] bool
    zoneout: Optional[Tensor] = None  # [S, T, B, H] keep-masks in the cell dtype


def op_name(kind: CellKind, suffix: str = "", backward: bool = False) -> str:
    return f"layernorm_{kind.name}{'_backward' if backward else ''}{suffix}"


def layer_norm_op(kind: CellKind, suffix: str = "", backward: bool = False) -> torch._ops.OpOverload:
    return getattr(torch.ops.rnnfused, op_name(kind, suffix, backward)).default


def saved_width(kind: CellKind, hidden: int) -> int:
    """W of ``saved`` [T, B, W] (module docstring)."""
    cell = 1 if kind.has_cell_state else 0
    return (kind.saved_per_unit + cell + kind.gates) * hidden + 1 + cell


def _only(present: bool, *names: str) -> List[str]:
    return list(names) if present else []


def forward_arg_names(kind: CellKind) -> List[str]:
    c = kind.has_cell_state
    return (["xg", "h0"] + _only(c, "c0") + ["w_hh"] + _only(kind.split_recurrent_grad, "b_hh") + ["ln_hh_weight"]
            + _only(c, "ln_c_weight", "ln_c_bias") + ["lengths", "reverse", "train", "resets", "zoneout"])


def backward_arg_names(kind: CellKind) -> List[str]:
    c = kind.has_cell_state
    return (["grad_output", "grad_h_n"] + _only(c, "grad_c_n") + ["h0"] + _only(c, "c0") + ["w_hh", "ln_hh_weight"]
            + _only(c, "ln_c_weight", "ln_c_bias") + ["lengths", "reverse", "output", "saved"] + _only(c, "cells")
            + ["resets", "zoneout"])


def forward_output_names(kind: CellKind) -> List[str]:
    c = kind.has_cell_state
    return ["output", "h_n"] + _only(c, "c_n") + ["saved"] + _only(c, "cells")


def grad_names(kind: CellKind) -> List[str]:
    """The LayerNormInputs fields whose gradients the backward op returns, in its output order."""
    c = kind.has_cell_state
    return (["xg", "h0"] + _only(c, "c0") + ["w_hh"] + _only(kind.split_recurrent_grad, "b_hh") + ["ln_hh_weight"]
            + _only(c, "ln_c_weight", "ln_c_bias"))


_OPTIONAL = {"b_hh", "lengths", "resets", "zoneout"}  # the `Tensor?` arguments
_DEFAULTS = {"train": True, "resets": None, "zoneout": None}


def schema_types(names: Sequence[str]) -> List[str]:
    """'Tensor xg', 'Tensor? b_hh', 'bool reverse', 'bool train=True', … for the argument names."""
    out = []
    for n in names:
        kind = "bool" if n in ("reverse", "train") else "Tensor?" if n in _OPTIONAL else "Tensor"
        default = {"train": "=True", "resets": "=None", "zoneout": "=None"}.get(n, "")
        out.append(f"{kind} {n}{default}")
    return out


def inputs_from_forward_args(kind: CellKind, args: Sequence) -> LayerNormInputs:
    given = dict(zip(forward_arg_names(kind), args))
    for name, default in _DEFAULTS.items():
        given.setdefault(name, default)
    return LayerNormInputs(**{f: given.get(f) for f in LayerNormInputs._fields})


def forward_args(kind: CellKind, x: LayerNormInputs) -> tuple:
    return tuple(getattr(x, n) for n in forward_arg_names(kind))


def layer_norm_gates(kind: CellKind, input: Tensor, w_ih: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
                     ln_ih_weight: Tensor, ln_ih_bias: Tensor, ln_hh_bias: Tensor):
    """The non-sequential part of a LayerNorm layer-direction, as differentiable torch ops: input [T, B, I] ->
    (xg [T, B, G*H], recurrent bias [G*H] or None). ``LN_ih(x W_ihᵀ) + b_ih`` (one GEMM and one layer_norm over all
    steps); β_hh + b_hh add to the gates for the LSTM (into xg) and stay in the recurrent term for the GRU."""
    xw = torch.matmul(input, w_ih.t())
    xg = F.layer_norm(xw, xw.shape[-1:], ln_ih_weight, ln_ih_bias, reference.LAYER_NORM_EPS)
    if b_ih is not None:
        xg = xg + b_ih
    recurrent_bias = ln_hh_bias if b_hh is None else ln_hh_bias + b_hh
    if kind.split_recurrent_grad:
        return xg, recurrent_bias
    return xg + recurrent_bias, None


def reference_outputs(kind: CellKind, x: LayerNormInputs) -> tuple:
    """The reference equations: (output, h_n) plus c_n for the LSTM."""
    return reference.layer_norm_recurrence(kind, x.xg, x.h0, x.c0, x.w_hh, x.b_hh, x.ln_hh_weight, x.ln_c_weight,
                                           x.ln_c_bias, x.lengths, x.reverse, resets=x.resets, zoneout=x.zoneout)


# ------------------------------------------------------------------------------------------------- fakes, autograd
def _forward_fake(kind: CellKind):
    def fake(*args):
        x = inputs_from_forward_args(kind, args)
        T, B, GH = x.xg.shape
        H = GH // kind.gates
        cdt = cell_state_dtype(x.xg.dtype)
        outs = [x.xg.new_empty(T, B, H), x.xg.new_empty(B, H)]
        if kind.has_cell_state:
            outs.append(x.xg.new_empty(B, H))
        kept = (T, B) if x.train else None
        outs.append(x.xg.new_empty(*kept, saved_width(kind, H), dtype=cdt) if kept else x.xg.new_empty(0, dtype=cdt))
        if kind.has_cell_state:
            outs.append(x.xg.new_empty(*kept, H, dtype=cdt) if kept else x.xg.new_empty(0, dtype=cdt))
        return tuple(outs)
    return fake


def _backward_fake(kind: CellKind):
    def fake(*args):
        a = dict(zip(backward_arg_names(kind), args))
        T, B, H = a["output"].shape
        GH = a["w_hh"].shape[0]
        shapes = {"xg": (T, B, GH), "h0": (B, H), "c0": (B, H), "w_hh": (GH, H), "b_hh": (GH,), "ln_hh_weight": (GH,),
                  "ln_c_weight": (H,), "ln_c_bias": (H,)}
        return tuple(a["output"].new_empty(shapes[n]) for n in grad_names(kind))
    return fake


_DIFFERENTIABLE = ("xg", "h0", "c0", "w_hh", "b_hh", "ln_hh_weight", "ln_c_weight", "ln_c_bias")


def _register_autograd(kind: CellKind, forward_op, backward_op) -> None:
    output_names = forward_output_names(kind)

    def setup_context(ctx, inputs, output):
        x = inputs_from_forward_args(kind, inputs)
        out = dict(zip(output_names, output))
        ctx.mark_non_differentiable(*[out[n] for n in ("saved", "cells") if n in out])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*[getattr(x, f) for f in _DIFFERENTIABLE], x.lengths, x.resets, x.zoneout,
                              out["output"], out["saved"], out.get("cells"))
        ctx.reverse, ctx.train, ctx.num_inputs = x.reverse, x.train, len(inputs)

    def backward(ctx, *grads):
        *tensors, lengths, resets, zoneout, output, saved, cells = ctx.saved_tensors
        x = LayerNormInputs(*tensors, lengths=lengths, reverse=ctx.reverse, resets=resets, zoneout=zoneout)
        state_grads = state_gradients(kind, dict(zip(output_names, grads)), output, x.h0, x.c0)
        if torch.is_grad_enabled():  # create_graph: differentiable gradients through the reference equations
            by_field = differentiable_gradients(lambda y: reference_outputs(kind, y), _DIFFERENTIABLE, x, state_grads)
        elif not ctx.train:
            raise RuntimeError(f"rnnfused::{op_name(kind)} ran with train=False (inference), which keeps nothing for "
                               "backward; call it with train=True to differentiate it")
        else:
            by_field = backward_op_gradients(kind, backward_op, backward_arg_names(kind), grad_names(kind), x, output,
                                             saved, cells, state_grads)
        present = {f: (by_field.get(f) if getattr(x, f) is not None else None) for f in _DIFFERENTIABLE}
        grads = forward_args(kind, LayerNormInputs(**present, lengths=None, reverse=None, train=None))
        return grads[:ctx.num_inputs]

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


def register_layer_norm_family(suffix: str = "") -> None:
    """Fakes, autograd and autocast of the ops rnnfused::layernorm_<cell>{suffix} and their backward ops (the ops
    themselves are defined by the family: C++ or Triton)."""
    for kind in LAYER_NORM_KINDS.values():
        fwd, bwd = op_name(kind, suffix), op_name(kind, suffix, backward=True)
        torch.library.register_fake(f"rnnfused::{fwd}")(_forward_fake(kind))
        torch.library.register_fake(f"rnnfused::{bwd}")(_backward_fake(kind))
        forward_op = layer_norm_op(kind, suffix)
        _register_autograd(kind, forward_op, layer_norm_op(kind, suffix, backward=True))
        register_autocast(forward_op, fwd)


if extension_loaded():
    register_layer_norm_family("")
