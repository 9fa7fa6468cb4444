"""The single-step cell ops ``rnnfused::{lstm,gru,rnn_tanh,rnn_relu}_cell``: fakes, autograd and autocast, and
:func:`cell_step`, the step the ``Fused*Cell`` modules run.

The C++ ops (schemas: the cell block at the end of csrc/ops.cpp; kernels: csrc/cell/cell_ops.h) compute one step
with two GEMMs and one fused pointwise pass, and their backward with one pointwise pass plus only the GEMMs autograd
asks for — none of the sequence ops' [T, ...] machinery, which a cell called in a Python loop pays for at every step.
They exist for the backends built into rnnfused._C (cpu, cuda); other backends (triton, reference) run a step as
their sequence op with T = 1.

First-order gradients run the ``*_cell_backward`` op; a differentiable backward (``create_graph=True``) goes through
the reference equations, as for the sequence ops (rnnfused/_ops.py). The autograd formula is registered on the ops
(``torch.library.register_autograd``: raw op calls, torch.compile, autocast) and, for eager cell loops, also wrapped
in an ``autograd.Function`` that skips torch.library's per-call Python layers (:func:`cell_step` picks).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

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
def _setup_context(kind: CellKind, ctx, inputs, output) -> None:
    input, hx, cx, w_ih, w_hh, b_ih, b_hh = _unpack(kind, inputs)
    outs = output if isinstance(output, tuple) else (output,)
    if kind.has_cell_state:
        read = (outs[2], outs[1])  # saved, c'
    elif kind.saved_per_unit:
        read = (outs[1],)          # saved
    else:
        read = (outs[0],)          # h' (the Elman backward reads it)
    n_out = 1 + kind.has_cell_state  # differentiable outputs: h' (and c')
    if len(outs) > n_out:
        ctx.mark_non_differentiable(*outs[n_out:])
    ctx.set_materialize_grads(False)  # an unused c' gives None, not a [B, H] zero fill
    ctx.save_for_backward(input, hx, cx, w_ih, w_hh, b_ih, b_hh, *read)


def _backward(kind: CellKind, ctx, grads) -> tuple:
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
            g = _BACKWARD_OPS[kind.name](grad_h, grad_c, input, hx, cx, w_ih, w_hh, saved, c, mask)
        else:
            gi, gh, gwih, gwhh, gbih, gbhh = _BACKWARD_OPS[kind.name](grad_h, input, hx, w_ih, w_hh, read[0], mask)
            g = (gi, gh, None, gwih, gwhh, gbih, gbhh)
        # What autograd did not ask for came back empty.
        g = tuple(t if n else None for t, n in zip(g, needs))
    return g if kind.has_cell_state else g[:2] + g[3:]


def _register_autograd(kind: CellKind) -> None:
    torch.library.register_autograd(cell_op(kind), lambda ctx, *grads: _backward(kind, ctx, grads),
                                    setup_context=lambda ctx, inputs, output: _setup_context(kind, ctx, inputs, output))


def _eager_function(kind: CellKind) -> type:
    """The same autograd (setup_context, backward) as an autograd.Function whose forward calls the op below the
    Autograd key: what eager cell loops run. torch.library's autograd wrapper adds Python layers per call (argument
    defaults filled from the schema, a keyset record, the redispatch) that cost as much as a whole step at B=1. The
    forward takes ctx (old style): with a separate setup_context, Function.apply binds the arguments with
    inspect.signature on every call, slower still."""
    op = cell_op(kind)

    def forward(ctx, *args):
        with torch._C._AutoDispatchBelowAutograd():
            output = op(*args)
        _setup_context(kind, ctx, args, output)
        return output

    return type(f"rnnfused_{kind.name}_cell", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(lambda ctx, *grads: _backward(kind, ctx, grads)),
    })


# Per cell kind name: the ops and the eager autograd.Function (filled by _register).
_FORWARD_OPS: Dict[str, Any] = {}
_BACKWARD_OPS: Dict[str, Any] = {}
_EAGER_FUNCTIONS: Dict[str, type] = {}


def _register() -> None:
    for kind in CELL_KINDS.values():
        torch.library.register_fake(f"rnnfused::{kind.name}_cell")(_forward_fake(kind))
        torch.library.register_fake(f"rnnfused::{kind.name}_cell_backward")(_backward_fake(kind))
        _register_autograd(kind)
        _ops._register_autocast(cell_op(kind), f"{kind.name}_cell")
        _FORWARD_OPS[kind.name] = cell_op(kind)
        _BACKWARD_OPS[kind.name] = cell_backward_op(kind)
        _EAGER_FUNCTIONS[kind.name] = _eager_function(kind)


# ---------------------------------------------------------------------------------------------------- the step
# (backend argument, RNNFUSED_BACKEND, device, dtype) -> backend name: the selection rule's inputs and its answer,
# kept because a cell loop asks at every step (resolving costs about as much as a small step's kernel).
_RESOLVED: Dict[tuple, str] = {}


def cell_step(kind: CellKind, input: Tensor, hx: Tensor, cx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor],
              backend: Optional[str] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """One validated step (input [B, I], hx/cx [B, H]) on the selected backend: (h', c' or None)."""
    device, dtype = input.device, input.dtype
    key = (backend, os.environ.get(backends.ENV_VAR), device, dtype)
    name = _RESOLVED.get(key)
    if name is None:
        name = backends.resolve_backend(backend, device, dtype)
        if name in CELL_OP_BACKENDS:  # built into rnnfused._C; lazily loaded backends are asked every time
            _RESOLVED[key] = name
    if name not in CELL_OP_BACKENDS:  # triton, reference: their sequence op with T = 1
        x = _ops.LayerInputs(input.unsqueeze(0), hx, cx, w_ih, w_hh, b_ih, b_hh, None, None, False)
        _, h, c = backends.get_backend(name, device, dtype).run(kind, x)
        return h, c
    args = cell_forward_args(kind, input, hx, cx, w_ih, w_hh, b_ih, b_hh)
    if (torch.compiler.is_compiling() or torch.is_autocast_enabled(device.type)
            or torch._C._are_functorch_transforms_active()):
        out = _FORWARD_OPS[kind.name](*args)  # the op's registered autograd: traceable, autocast, torch.func
    elif torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
        out = _EAGER_FUNCTIONS[kind.name].apply(*args)
    else:
        with torch._C._AutoDispatchBelowAutograd():  # nothing to record: the kernel alone
            out = _FORWARD_OPS[kind.name](*args)
    if kind.has_cell_state:
        return out[0], out[1]
    return (out[0] if kind.saved_per_unit else out), None


if _ops.extension_loaded():
    _register()
