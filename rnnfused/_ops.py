"""Python side of the custom ops: loading rnnfused._C, fake (meta) functions and autograd formulas.

The schemas live in csrc/ops.cpp. Every op family (the C++ ops ``rnnfused::lstm`` …, and the Triton ones with a
suffix, ``rnnfused::lstm_triton`` …) has the same schemas, so :func:`register_family` registers fakes and
autograd for any of them.

First-order gradients run the family's fused BPTT backward op. When the backward itself must be differentiable
(``create_graph=True``: double backward, gradient penalties) the gradient is instead taken through the reference
equations (rnnfused/reference.py) recomputed from the saved inputs, which every backend supports.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from . import reference
from ._cells import CELL_KINDS, CellKind, cell_state_dtype
from ._extension import load_extension

# Importing _C registers torch.ops.rnnfused.*; it is skipped (with a warning) when the installed torch is not the
# one _C was built against (see _extension.py).
_C, EXTENSION_ERROR = load_extension()


def extension_loaded() -> bool:
    return _C is not None


def cuda_built() -> bool:
    return _C is not None and bool(getattr(_C, "built_with_cuda", False))


class LayerInputs(NamedTuple):
    input: Tensor
    h0: Tensor
    c0: Optional[Tensor]
    w_ih: Tensor
    w_hh: Tensor
    b_ih: Optional[Tensor]
    b_hh: Optional[Tensor]
    w_hr: Optional[Tensor]
    lengths: Optional[Tensor]
    reverse: bool


def forward_args(kind: CellKind, x: LayerInputs) -> tuple:
    """The positional arguments of ``kind``'s forward op."""
    if kind.has_cell_state:
        return (x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.w_hr, x.lengths, x.reverse)
    return (x.input, x.h0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.lengths, x.reverse)


def _unpack_inputs(kind: CellKind, args: Sequence) -> LayerInputs:
    if kind.has_cell_state:
        return LayerInputs(*args)
    input, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse = args
    return LayerInputs(input, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse)


def _gates_hidden(kind: CellKind, w_hh: Tensor) -> int:
    return w_hh.shape[0] // kind.gates


# ----------------------------------------------------------------------------------------------- fake functions
def _check_devices(op: str, x: LayerInputs) -> None:
    """Mixed devices would otherwise land on the Meta kernel (this fake) and 'succeed' without computing."""
    for name in ("h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"):
        t = getattr(x, name)
        if t is not None and t.device != x.input.device:
            raise RuntimeError(f"{op}: {name} must be on {x.input.device} like input, got {t.device}")


def _forward_fake(kind: CellKind):
    def fake(*args):
        x = _unpack_inputs(kind, args)
        _check_devices(f"rnnfused::{kind.name}", x)
        T, B = x.input.shape[0], x.input.shape[1]
        H, H_out = _gates_hidden(kind, x.w_hh), x.w_hh.shape[1]
        output = x.input.new_empty(T, B, H_out)
        h_n = x.input.new_empty(B, H_out)
        if kind.has_cell_state:
            cells = x.input.new_empty(T, B, H, dtype=cell_state_dtype(x.input.dtype))
            return output, h_n, x.input.new_empty(B, H), x.input.new_empty(T, B, 4 * H), cells
        if kind.saved_per_unit:
            return output, h_n, x.input.new_empty(T, B, kind.saved_per_unit * H)
        return output, h_n

    return fake


def _backward_fake(kind: CellKind):
    def fake(grad_output, grad_h_n, *rest):
        if kind.has_cell_state:
            _grad_c_n, input, h0, c0, w_ih, w_hh, w_hr = rest[:7]
        else:
            input, h0, w_ih, w_hh = rest[:4]
            c0 = w_hr = None
        GH = w_hh.shape[0]
        # The op returns contiguous gradients whatever the inputs' strides.
        like = lambda t: t.new_empty(t.shape)  # noqa: E731
        grads = [like(input), like(h0)]
        if kind.has_cell_state:
            grads.append(like(c0))
        grads += [like(w_ih), like(w_hh), input.new_empty(GH), input.new_empty(GH)]
        if kind.has_cell_state:
            grads.append(like(w_hr) if w_hr is not None else input.new_empty(0))
        return tuple(grads)

    return fake


# ----------------------------------------------------------------------------------------------------- autograd
def _zeros_if_none(grad: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def reference_outputs(kind: CellKind, x: LayerInputs) -> tuple:
    """The reference equations for ``kind``: (output, h_n, c_n) for LSTM, (output, h_n) otherwise."""
    if kind.name == "lstm":
        return reference.lstm_layer(*x)
    if kind.name == "gru":
        return reference.gru_layer(x.input, x.h0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.lengths, x.reverse)
    return reference.rnn_layer(x.input, x.h0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.lengths, x.reverse,
                               kind.nonlinearity)


def _differentiable_backward(kind: CellKind, x: LayerInputs, grads: Sequence[Tensor]) -> tuple:
    """Gradients that are themselves differentiable: autograd through the reference equations."""
    fields = ("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")
    with torch.enable_grad():
        leaves = {f: getattr(x, f) for f in fields if getattr(x, f) is not None}
        # Saved tensors that did not require grad become leaves here, so the recomputation has a graph.
        leaves = {f: (t if t.requires_grad else t.detach().requires_grad_()) for f, t in leaves.items()}
        outs = reference_outputs(kind, x._replace(**leaves))
        got = torch.autograd.grad(outs, list(leaves.values()), grads[: len(outs)], create_graph=True,
                                  allow_unused=True)
    by_field = dict(zip(leaves.keys(), got))
    by_field = {f: (torch.zeros_like(leaves[f]) if g is None else g) for f, g in by_field.items()}
    return tuple(by_field.get(f) for f in fields)


def _register_autograd(kind: CellKind, forward_op, backward_op) -> None:
    def setup_context(ctx, inputs, output):
        x = _unpack_inputs(kind, inputs)
        out, h_n = output[0], output[1]
        saved = output[3] if kind.has_cell_state else (output[2] if kind.saved_per_unit else None)
        cells = output[4] if kind.has_cell_state else None
        ctx.mark_non_differentiable(*[t for t in (saved, cells) if t is not None])
        ctx.set_materialize_grads(False)  # unused outputs' grads stay None (no [T, B, 4H] zero fills)
        ctx.save_for_backward(x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.w_hr, x.lengths, out, saved,
                              cells)
        ctx.reverse = x.reverse

    def backward(ctx, *grads):
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, saved, cells = ctx.saved_tensors
        x = LayerInputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, ctx.reverse)
        grad_out = _zeros_if_none(grads[0], out)
        grad_h_n = _zeros_if_none(grads[1], h0)
        grad_c_n = _zeros_if_none(grads[2], c0) if kind.has_cell_state else None
        if torch.is_grad_enabled():
            state_grads = (grad_out, grad_h_n) + ((grad_c_n,) if kind.has_cell_state else ())
            g = _differentiable_backward(kind, x, state_grads)
        elif kind.has_cell_state:
            g = backward_op(grad_out, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh, w_hr, lengths, ctx.reverse, out,
                            saved, cells)
        else:
            extra = (saved,) if kind.saved_per_unit else ()
            gi, gh0, gwih, gwhh, gbih, gbhh = backward_op(grad_out, grad_h_n, input, h0, w_ih, w_hh, lengths,
                                                          ctx.reverse, out, *extra)
            g = (gi, gh0, None, gwih, gwhh, gbih, gbhh, None)
        gi, gh0, gc0, gwih, gwhh, gbih, gbhh, gwhr = g
        has_bias = b_ih is not None
        grads_by_field = LayerInputs(gi, gh0, gc0, gwih, gwhh, gbih if has_bias else None, gbhh if has_bias else None,
                                     gwhr if w_hr is not None else None, None, None)
        return forward_args(kind, grads_by_field)

    torch.library.register_autograd(forward_op, backward, setup_context=setup_context)


# ----------------------------------------------------------------------------------------------------- autocast
_AUTOCAST_LIB = torch.library.Library("rnnfused", "IMPL")


def _autocast_arg(arg, dtype: torch.dtype):
    # As autocast's lower-precision policy: floating tensors other than float64 take the autocast dtype.
    if isinstance(arg, Tensor) and arg.is_floating_point() and arg.dtype not in (torch.float64, dtype):
        return arg.to(dtype)
    return arg


def _register_autocast(op: torch._ops.OpOverload, name: str) -> None:
    """Under ``torch.autocast(device, dtype)`` the forward op runs in the autocast dtype chosen at call time (as
    nn.LSTM does); torch.library.register_autocast would fix one dtype at registration."""
    for device_type in ("cpu", "cuda"):
        key = "AutocastCPU" if device_type == "cpu" else "AutocastCUDA"
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _keyset_excluded=keyset):
            dtype = torch.get_autocast_dtype(_device_type)
            with torch._C._ExcludeDispatchKeyGuard(_keyset_excluded):
                return op(*[_autocast_arg(a, dtype) for a in args])

        _AUTOCAST_LIB.impl(name, kernel, key, with_keyset=True)


def register_family(suffix: str = "") -> None:
    """Registers fake functions, autograd and autocast for the ops ``rnnfused::{kind}{suffix}`` and their
    backward ops."""
    for kind in CELL_KINDS.values():
        fwd_name, bwd_name = f"rnnfused::{kind.name}{suffix}", f"rnnfused::{kind.name}_backward{suffix}"
        torch.library.register_fake(fwd_name)(_forward_fake(kind))
        torch.library.register_fake(bwd_name)(_backward_fake(kind))
        fwd = getattr(torch.ops.rnnfused, f"{kind.name}{suffix}")
        bwd = getattr(torch.ops.rnnfused, f"{kind.name}_backward{suffix}")
        _register_autograd(kind, fwd.default, bwd.default)
        _register_autocast(fwd.default, f"{kind.name}{suffix}")


def op_for(kind: CellKind, suffix: str = ""):
    return getattr(torch.ops.rnnfused, f"{kind.name}{suffix}").default


if _C is not None:
    register_family("")
