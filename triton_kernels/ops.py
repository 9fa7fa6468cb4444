"""Registers the Triton backend's ops: rnnfused::<cell>_triton and rnnfused::<cell>_backward_triton for every cell of
the registry (rnnfused/_cells.py), and (importing layer_norm_ops.py) the LayerNorm cells' rnnfused::layernorm_*_triton.

Each is a torch.library.triton_op with exactly the schema of the C++ op of the same name without the suffix
(csrc/sequence/op_schemas.h). triton_op infers the schema from the function's signature (torch 2.13 ignores
``schema=``), so each op's function carries a signature built from the registry's argument lists (rnnfused/_inputs.py:
``Tensor?`` for the optional ones, ``bool reverse``); tests/test_triton_backend.py compares them with the C++ ones.
The schema string is passed too, for versions that read it.

triton_op registers the traced body as the fake function; rnnfused._op_family.register_family("_triton") then replaces
it with the family's shape-only fake (the same one the C++ ops use: cheaper, and it needs no kernel — the
interpreter's kernels cannot run on fake tensors) and registers the autograd formula (BPTT through the
*_backward_triton op). Under torch.compile the triton_op is still decomposed into its body: the GEMMs, which
Inductor compiles, and one opaque recurrence node for either path (recurrence_ops.py).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch.library import triton_op

from rnnfused._cells import CELL_KINDS, CellKind
from rnnfused._extension import extension_loaded
from rnnfused._inputs import (LayerInputs, backward_arg_names, forward_arg_names, forward_output_names, grad_names,
                              inputs_from_forward_args)
from rnnfused._op_family import register_family

from . import layer_norm_ops  # noqa: F401  (registers rnnfused::layernorm_*_triton)
from .layer import layer_backward, layer_forward
from .op_signature import with_signature

_OPTIONAL = {"b_ih", "b_hh", "w_hr", "lengths", "resets", "zoneout"}  # the `Tensor?` arguments of the schemas
_DEFAULTS = {"train": True, "resets": None, "zoneout": None}  # the schemas' defaults


def _schema(name: str) -> Optional[str]:
    """The C++ op's schema (registered by rnnfused._C), without its name, when the extension is loaded."""
    if not extension_loaded():
        return None
    return str(getattr(torch.ops.rnnfused, name).default._schema).split(name, 1)[1]


def _typed(name: str) -> str:
    """The schema's typed argument: 'Tensor input', 'Tensor? b_ih', 'bool train=True', …"""
    kind = "bool" if name in ("reverse", "train") else "Tensor?" if name in _OPTIONAL else "Tensor"
    default = f"={_DEFAULTS[name]}" if name in _DEFAULTS else ""
    return f"{kind} {name}{default}"


def _with_signature(fn: Callable, names: List[str], n_outputs: int) -> Callable:
    return with_signature(fn, [_typed(n) for n in names], n_outputs)


def _register(kind: CellKind) -> None:
    names = backward_arg_names(kind)

    def forward(*args):
        return layer_forward(kind, inputs_from_forward_args(kind, args))

    def backward(*args):
        a = dict(zip(names, args))
        x = LayerInputs(a["input"], a["h0"], a.get("c0"), a["w_ih"], a["w_hh"], None, None, a.get("w_hr"),
                        a["lengths"], a["reverse"], resets=a.get("resets"), zoneout=a.get("zoneout"))
        return layer_backward(kind, a["grad_output"], a["grad_h_n"], a.get("grad_c_n"), x, a["output"],
                              a.get("saved"), a.get("cells"))

    for op_name, fn, arg_names, n_out in (
            (kind.name, forward, forward_arg_names(kind), len(forward_output_names(kind))),
            (f"{kind.name}_backward", backward, names, len(grad_names(kind)))):
        triton_op(f"rnnfused::{op_name}_triton", _with_signature(fn, arg_names, n_out), mutates_args=(),
                  schema=_schema(op_name))


for _kind in CELL_KINDS.values():
    _register(_kind)
register_family("_triton")
