"""The autograd formula of the forward ops: BPTT through the family's fused backward op.

When the backward itself must be differentiable (``create_graph=True``: double backward, gradient penalties), the
gradient is instead taken through the reference equations (rnnfused/reference.py) recomputed from the saved inputs,
which every backend supports.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from . import reference
from ._cells import CellKind
from ._inputs import (LayerInputs, backward_arg_names, forward_args, forward_output_names, grad_names,
                      inputs_from_forward_args)

__all__ = ["register_autograd", "reference_outputs"]

_DIFFERENTIABLE = ("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def reference_outputs(kind: CellKind, x: LayerInputs) -> tuple:
    """The reference equations for ``kind``: (output, h_n) plus c_n for cells with a cell state."""
    return reference.layer(kind, x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.w_hr, x.lengths, x.reverse,
                           resets=x.resets, zoneout=x.zoneout)


# The pieces of a recurrence family's backward, shared by this family and the LayerNorm one (_layer_norm_ops.py).
def differentiable_gradients(reference_fn: Callable, fields: Sequence[str], x, grads: Sequence[Tensor]) -> dict:
    """Gradients that are themselves differentiable (create_graph): autograd through ``reference_fn(x)`` (the
    family's reference equations) w.r.t. the ``fields`` of the inputs NamedTuple ``x`` that are present."""
    with torch.enable_grad():
        leaves = {f: getattr(x, f) for f in fields if getattr(x, f) is not None}
        # Saved tensors that did not require grad become leaves here, so the recomputation has a graph.
        leaves = {f: (t if t.requires_grad else t.detach().requires_grad_()) for f, t in leaves.items()}
        outs = reference_fn(x._replace(**leaves))
        got = torch.autograd.grad(outs, list(leaves.values()), grads[: len(outs)], create_graph=True,
                                  allow_unused=True)
    return {f: (torch.zeros_like(leaves[f]) if g is None else g) for f, g in zip(leaves, got)}


def _zeros_if_none(grad: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def state_gradients(kind: CellKind, grads: dict, output: Tensor, h0: Tensor, c0: Optional[Tensor]) -> list:
    """[dL/d output, dL/d h_n, (dL/d c_n)] from autograd's gradients by output name, zeros for the unused ones."""
    out = [_zeros_if_none(grads["output"], output), _zeros_if_none(grads["h_n"], h0)]
    if kind.has_cell_state:
        out.append(_zeros_if_none(grads["c_n"], c0))
    return out


def backward_op_gradients(kind: CellKind, backward_op, arg_names: Sequence[str], result_names: Sequence[str], x,
                          output: Tensor, saved, cells, state_grads: Sequence[Tensor]) -> dict:
    """First-order gradients by field: the family's backward op over the inputs ``x``, the forward's saved tensors
    and ``state_grads``."""
    values = dict(x._asdict(), output=output, saved=saved, cells=cells, grad_output=state_grads[0],
                  grad_h_n=state_grads[1], grad_c_n=state_grads[2] if kind.has_cell_state else None)
    return dict(zip(result_names, backward_op(*[values[n] for n in arg_names])))


def register_autograd(kind: CellKind, forward_op, backward_op) -> None:
    """BPTT for ``forward_op`` (one cell kind of an op family) through ``backward_op``."""
    output_names = forward_output_names(kind)

    def setup_context(ctx, inputs, output):
        x = inputs_from_forward_args(kind, inputs)
        out = dict(zip(output_names, output))
        # What only backward reads (saved activations, cell states) needs no gradient of its own.
        ctx.mark_non_differentiable(*[out[n] for n in ("saved", "cells") if n in out])
        ctx.set_materialize_grads(False)  # unused outputs' grads stay None (no [T, B, 4H] zero fills)
        ctx.save_for_backward(x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.w_hr, x.lengths, x.resets,
                              x.zoneout, out["output"], out.get("saved"), out.get("cells"))
        ctx.reverse = x.reverse
        ctx.train = x.train
        ctx.num_inputs = len(inputs)

    def backward(ctx, *grads):
        (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, resets, zoneout, output, saved,
         cells) = ctx.saved_tensors
        x = LayerInputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, ctx.reverse, resets=resets,
                        zoneout=zoneout)
        state_grads = state_gradients(kind, dict(zip(output_names, grads)), output, h0, c0)
        if torch.is_grad_enabled():
            by_field = differentiable_gradients(lambda y: reference_outputs(kind, y), _DIFFERENTIABLE, x, state_grads)
        elif not ctx.train and (kind.saved_per_unit or kind.has_cell_state):
            raise RuntimeError(f"rnnfused::{kind.name} ran with train=False (inference), which keeps nothing for "
                               "backward; call it with train=True to differentiate it")
        else:
            by_field = backward_op_gradients(kind, backward_op, backward_arg_names(kind), grad_names(kind), x, output,
                                             saved, cells, state_grads)
        # Absent optional inputs (no bias, no projection) get no gradient.
        present = {f: (by_field.get(f) if getattr(x, f) is not None else None) for f in _DIFFERENTIABLE}
        grads = forward_args(kind, LayerInputs(**present, lengths=None, reverse=None, train=None, resets=None,
                                               zoneout=None))
        return grads[:ctx.num_inputs]  # no entries for `train`/`resets`/`zoneout` when the call left them out

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)
