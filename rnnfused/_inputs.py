"""The inputs of one layer-direction, and the argument lists of the ops, derived from the cell's traits.

The op schemas (csrc/sequence/op_schemas.h) take the optional parts only for the cells that have them: ``c0``,
``grad_c_n`` and ``cells`` for a cell state, ``w_hr`` for a projection, ``saved`` for cells that save activations.
Everything in Python that calls or implements an op builds or reads its arguments with these helpers.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence

from torch import Tensor

from ._cells import CellKind

__all__ = ["LayerInputs", "forward_arg_names", "backward_arg_names", "forward_args", "inputs_from_forward_args",
           "named_args", "grad_names", "forward_output_names"]


class LayerInputs(NamedTuple):
    input: Tensor              # [T, B, I] time-major
    h0: Tensor                 # [B, H_out]
    c0: Optional[Tensor]       # [B, H] (cells with a cell state)
    w_ih: Tensor               # [G*H, I]
    w_hh: Tensor               # [G*H, H_out]
    b_ih: Optional[Tensor]     # [G*H]
    b_hh: Optional[Tensor]     # [G*H]
    w_hr: Optional[Tensor]     # [H_out, H] (cells with a projection, when proj_size > 0)
    lengths: Optional[Tensor]  # [B] int64 in [1, T], or None: every row runs T steps
    reverse: bool              # run from t = T-1 down to 0
    train: bool = True         # False: inference, the forward keeps nothing for backward (saved/cells come back [0])
    resets: Optional[Tensor] = None  # [T, B] bool, or None: resets[t, b] splits row b's sequence before step t (each
                                     # segment runs from h0/c0, in both directions); never with lengths
    zoneout: Optional[Tensor] = None  # [S, T, B, H] keep-masks in the cell dtype (S = 2: h and c for LSTM, 1 for GRU)
                                      # or None: each step's state is m·previous + (1 − m)·new (no projection)


def _only(present: bool, *names: str) -> List[str]:
    return list(names) if present else []


def forward_arg_names(kind: CellKind) -> List[str]:
    """The forward op's arguments, in schema order."""
    return (["input", "h0"] + _only(kind.has_cell_state, "c0") + ["w_ih", "w_hh", "b_ih", "b_hh"]
            + _only(kind.has_projection, "w_hr") + ["lengths", "reverse", "train", "resets", "zoneout"])


def backward_arg_names(kind: CellKind) -> List[str]:
    """The backward op's arguments, in schema order."""
    return (["grad_output", "grad_h_n"] + _only(kind.has_cell_state, "grad_c_n") + ["input", "h0"]
            + _only(kind.has_cell_state, "c0") + ["w_ih", "w_hh"] + _only(kind.has_projection, "w_hr")
            + ["lengths", "reverse", "output"] + _only(kind.saved_per_unit > 0, "saved")
            + _only(kind.has_cell_state, "cells") + ["resets", "zoneout"])


def forward_output_names(kind: CellKind) -> List[str]:
    """The forward op's outputs, in schema order."""
    return (["output", "h_n"] + _only(kind.has_cell_state, "c_n") + _only(kind.saved_per_unit > 0, "saved")
            + _only(kind.has_cell_state, "cells"))


def grad_names(kind: CellKind) -> List[str]:
    """The LayerInputs fields whose gradients the backward op returns, in its output order."""
    return (["input", "h0"] + _only(kind.has_cell_state, "c0") + ["w_ih", "w_hh", "b_ih", "b_hh"]
            + _only(kind.has_projection, "w_hr"))


def named_args(names: Sequence[str], args: Sequence) -> Dict[str, object]:
    """{name: value} of positional op arguments (absent optional parts read as None through .get)."""
    return dict(zip(names, args))


def forward_args(kind: CellKind, x: LayerInputs) -> tuple:
    """The positional arguments of ``kind``'s forward op."""
    return tuple(getattr(x, name) for name in forward_arg_names(kind))


def inputs_from_forward_args(kind: CellKind, args: Sequence) -> LayerInputs:
    """The inverse of :func:`forward_args` (``train`` is True, ``resets`` and ``zoneout`` None when the call left them
    out, as the schema's defaults)."""
    given = named_args(forward_arg_names(kind), args)
    given.setdefault("train", True)
    given.setdefault("resets", None)
    given.setdefault("zoneout", None)
    return LayerInputs(**{field: given.get(field) for field in LayerInputs._fields})
