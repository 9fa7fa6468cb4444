"""Fake (meta) functions of the ops: output shapes and dtypes from the inputs, without computing (torch.compile,
torch.export, FakeTensor). One forward and one backward fake per cell kind, derived from its traits."""
from __future__ import annotations

from ._cells import CellKind, cell_state_dtype
from ._inputs import backward_arg_names, grad_names, inputs_from_forward_args, named_args
from ._validation import check_same_device

__all__ = ["forward_fake", "backward_fake"]


def forward_fake(kind: CellKind):
    """-> output [T, B, H_out], h_n [B, H_out], [c_n [B, H]], [saved [T, B, S*H]], [cells [T, B, H]]; saved and cells
    are [0] when train=False (inference keeps nothing for backward)."""

    def fake(*args):
        x = inputs_from_forward_args(kind, args)
        check_same_device(f"rnnfused::{kind.name}", x)  # mixed devices would land here and "succeed"
        T, B = x.input.shape[0], x.input.shape[1]
        H, H_out = x.w_hh.shape[0] // kind.gates, x.w_hh.shape[1]
        outs = [x.input.new_empty(T, B, H_out), x.input.new_empty(B, H_out)]
        if kind.has_cell_state:
            outs.append(x.input.new_empty(B, H))
        kept = (T, B) if x.train else ()
        if kind.saved_per_unit:
            outs.append(x.input.new_empty(*kept, kind.saved_per_unit * H) if kept else x.input.new_empty(0))
        if kind.has_cell_state:
            outs.append(x.input.new_empty(*kept, H, dtype=cell_state_dtype(x.input.dtype)) if kept
                        else x.input.new_empty(0, dtype=cell_state_dtype(x.input.dtype)))
        return tuple(outs)

    return fake


def backward_fake(kind: CellKind):
    """-> one gradient per differentiable input, contiguous, in schema order (grad_w_hr is [0] without w_hr)."""

    def fake(*args):
        a = named_args(backward_arg_names(kind), args)
        input = a["input"]
        GH = a["w_hh"].shape[0]
        grads = []
        for name in grad_names(kind):
            if name in ("b_ih", "b_hh"):
                grads.append(input.new_empty(GH))
            elif a.get(name) is None:  # w_hr of a layer without a projection
                grads.append(input.new_empty(0))
            else:
                grads.append(a[name].new_empty(a[name].shape))  # the op returns contiguous gradients
        return tuple(grads)

    return fake
