"""The single-step cell ops ``rnnfused::{lstm,gru,rnn_tanh,rnn_relu}_cell``: fakes, autograd and autocast, and
:func:`cell_step`, the step the ``Fused*Cell`` modules run.

The C++ ops (schemas: the cell block at the end of csrc/ops.cpp; kernels: csrc/cell/cell_ops.h) compute one step
with two GEMMs and one fused pointwise pass, and their backward with one pointwise pass plus only the GEMMs autograd
asks for — none of the sequence ops' [T, ...] machinery, which a cell called in a Python loop pays for at every step.
They exist for the backends built into rnnfused._C (cpu, cuda); other backends (triton, reference) run a step as
their sequence op with T = 1.

First-order gradients run the ``*_cell_backward`` op; a differentiable backward (``create_graph=True``) goes through
the reference equations, as for the sequence ops (rnnfused/_ops.py).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _ops, backends, reference
from ._cells import CELL_KINDS, CellKind

__all__ = ["cell_op", "cell_backward_op", "cell_forward_args", "reference_cell", "cell_step", "CELL_OP_BACKENDS"]

# Backends whose library (rnnfused._C) has the single-step ops.
CELL_OP_BACKENDS = ("cpu", "cuda")


def cell_op(kind: CellKind):
    return getattr(torch.ops.rnnfused, f"{kind.name}_cell").default


def cell_backward_op(kind: CellKind):
    return getattr(torch.ops.rnnfused, f"{kind.name}_cell_backward").default


def cell_forward_args(kind: CellKind, input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """The positional arguments of ``kind``'s cell op."""
    if kind.has_cell_state:
        return (input, hx, cx, w_ih, w_hh, b_ih, b_hh)
    return (input, hx, w_ih, w_hh, b_ih, b_hh)


def _unpack(kind: CellKind, args) -> tuple:
    """(input, hx, cx, w_ih, w_hh, b_ih, b_hh) from a cell op's arguments (cx None without a cell state)."""
    if kind.has_cell_state:
        return tuple(args)
    input, hx, w_ih, w_hh, b_ih, b_hh = args
    return (input, hx, None, w_ih, w_hh, b_ih, b_hh)


def reference_cell(kind: CellKind, input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """The reference equations of one step: (h', c') for LSTM, (h',) otherwise."""
    xg = F.linear(input, w_ih, b_ih)
    if kind.has_cell_state:
        return reference.lstm_step(xg, hx, cx, w_hh, b_hh)
    if kind.name == "gru":
        return (reference.gru_step(xg, hx, w_hh, b_hh),)
    return (reference.rnn_step(xg, hx, w_hh, b_hh, kind.nonlinearity),)


# ----------------------------------------------------------------------------------------------- fake functions
def _forward_fake(kind: CellKind):
    def fake(*args):
        input, hx, cx, w_ih, w_hh, b_ih, b_hh = _unpack(kind, args)
        for name, t in (("hx", hx), ("cx", cx), ("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)):
            # Mixed devices would otherwise land on this fake (Meta) and 'succeed' without computing.
            if t is not None and t.device != input.device:
                raise RuntimeError(f"rnnfused::{kind.name}_cell: {name} must be on {input.device} like input, "
                                   f"got {t.device}")
        B, H = input.shape[0], w_hh.shape[1]
        h = input.new_empty(B, H)
        if kind.has_cell_state:
            return h, input.new_empty(B, H), input.new_empty(B, kind.saved_per_unit * H)
        if kind.saved_per_unit:
            return h, input.new_empty(B, kind.saved_per_unit * H)
        return h

    return fake


def _backward_fake(kind: CellKind):
    def fake(grad_h, *rest):
        if kind.has_cell_state:
            _grad_c, input, hx, _cx, w_ih, w_hh = rest[:6]
        else:
            input, hx, w_ih, w_hh = rest[:4]
        mask = rest[-1]
        # Gradients left out are empty [0] tensors; every output is a fresh tensor (outputs must not alias).
        like = lambda shape, wanted: input.new_empty(shape if wanted else (0,))  # noqa: E731
        GH = w_hh.shape[0]
        grads = [like(input.shape, mask[0]), like(hx.shape, mask[1])]
        if kind.has_cell_state:
            grads.append(like(hx.shape, True))
        grads += [like(w_ih.shape, mask[2]), like(w_hh.shape, mask[2]), like((GH,), mask[3]), like((GH,), mask[3])]
        return tuple(grads)

    return fake


# ----------------------------------------------------------------------------------------------------- autograd
def _register_autograd(kind: CellKind) -> None:
    backward_op = cell_backward_op(kind)
    n_out = 1 + kind.has_cell_state  # differentiable outputs: h' (and c')

    def setup_context(ctx, inputs, output):
        input, hx, cx, w_ih, w_hh, b_ih, b_hh = _unpack(kind, inputs)
        outs = output if isinstance(output, tuple) else (output,)
        if kind.has_cell_state:
            read = (outs[2], outs[1])  # saved, c'
        elif kind.saved_per_unit:
            read = (outs[1],)          # saved
        else:
            read = (outs[0],)          # h' (the Elman backward reads it)
        if len(outs) > n_out:
            ctx.mark_non_differentiable(*outs[n_out:])
        ctx.set_materialize_grads(False)  # an unused c' gives None, not a [B, H] zero fill
        ctx.save_for_backward(input, hx, cx, w_ih, w_hh, b_ih, b_hh, *read)

    def backward(ctx, *grads):
        input, hx, cx, w_ih, w_hh, b_ih, b_hh, *read = ctx.saved_tensors
        grad_h = torch.zeros_like(hx) if grads[0] is None else grads[0]
        grad_c = grads[1] if kind.has_cell_state else None
        needs = ctx.needs_input_grad
        if not kind.has_cell_state:  # the same positions as LSTM's: (input, hx, cx, w_ih, w_hh, b_ih, b_hh)
            needs = needs[:2] + (False,) + needs[2:]
        if torch.is_grad_enabled():
            g = _differentiable_backward(kind, (input, hx, cx, w_ih, w_hh, b_ih, b_hh), (grad_h, grad_c))
        else:
            has_bias = b_ih is not None
            mask = [needs[0], needs[1], needs[3] or needs[4], has_bias and (needs[5] or needs[6])]
            if kind.has_cell_state:
                saved, c = read
                g = backward_op(grad_h, grad_c, input, hx, cx, w_ih, w_hh, saved, c, mask)
            else:
                gi, gh, gwih, gwhh, gbih, gbhh = backward_op(grad_h, input, hx, w_ih, w_hh, read[0], mask)
                g = (gi, gh, None, gwih, gwhh, gbih, gbhh)
            # What autograd did not ask for came back empty.
            g = tuple(t if n else None for t, n in zip(g, needs))
        return g if kind.has_cell_state else g[:2] + g[3:]

    torch.library.register_autograd(cell_op(kind), backward, setup_context=setup_context)


def _differentiable_backward(kind: CellKind, inputs: tuple, grads: tuple) -> tuple:
    """Gradients that are themselves differentiable: autograd through the reference equations."""
    with torch.enable_grad():
        leaves = [t if t is None or t.requires_grad else t.detach().requires_grad_() for t in inputs]
        outs = reference_cell(kind, *leaves)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        present = [t for t in leaves if t is not None]
        got = iter(torch.autograd.grad([o for o, _ in pairs], present, [g for _, g in pairs], create_graph=True,
                                       allow_unused=True))
    out = []
    for t in leaves:
        g = next(got) if t is not None else None
        out.append(torch.zeros_like(t) if t is not None and g is None else g)
    return tuple(out)


def _register() -> None:
    for kind in CELL_KINDS.values():
        torch.library.register_fake(f"rnnfused::{kind.name}_cell")(_forward_fake(kind))
        torch.library.register_fake(f"rnnfused::{kind.name}_cell_backward")(_backward_fake(kind))
        _register_autograd(kind)
        _ops._register_autocast(cell_op(kind), f"{kind.name}_cell")


# ---------------------------------------------------------------------------------------------------- the step
def cell_step(kind: CellKind, input: Tensor, hx: Tensor, cx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor],
              backend: Optional[str] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """One validated step (input [B, I], hx/cx [B, H]) on the selected backend: (h', c' or None)."""
    name = backends.resolve_backend(backend, input.device, input.dtype)
    if name in CELL_OP_BACKENDS:
        out = cell_op(kind)(*cell_forward_args(kind, input, hx, cx, w_ih, w_hh, b_ih, b_hh))
        if kind.has_cell_state:
            return out[0], out[1]
        return (out[0] if kind.saved_per_unit else out), None
    x = _ops.LayerInputs(input.unsqueeze(0), hx, cx, w_ih, w_hh, b_ih, b_hh, None, None, False)
    _, h, c = backends.get_backend(name, input.device, input.dtype).run(kind, x)
    return h, c


if _ops.extension_loaded():
    _register()
