"""The single-step cell ops ``rnnfused::<cell>_cell`` and ``<cell>_cell_backward`` of every cell of the registry:
their argument lists, fakes, autograd and autocast, and :func:`cell_step`, the step the ``Fused*Cell`` modules run.

The C++ ops (schemas: csrc/cell/cell_op_schemas.h, derived from the cell's traits; kernels: csrc/cell/cell_ops.h)
compute one step with two GEMMs and one fused pointwise pass, and their backward with one pointwise pass plus only the
GEMMs autograd asks for — none of the sequence ops' [T, ...] machinery, which a cell called in a Python loop pays for
at every step. They exist for the backends built into rnnfused._C (cpu, cuda); other backends (triton, reference) run
a step as their sequence op with T = 1.

Everything here is derived from the :class:`~rnnfused._cells.CellKind` entries (cell state, saved activations, the
reference step): a new cell needs nothing in this file.

First-order gradients run the ``*_cell_backward`` op; a differentiable backward (``create_graph=True``) goes through
the cell's reference step (``kind.step``), as for the sequence ops (rnnfused/_autograd.py). The autograd formula is
registered on the ops (``torch.library.register_autograd``: raw op calls, torch.compile, autocast). Eager cell loops
skip those layers (:func:`cell_step` picks): on the cpu backend the step is one call of a plain C++ function with its
own C++ autograd node (``rnnfused._C._cpu_cell_step_<cell>``, csrc/cell/cell_step_eager.h: no argument boxing, no
dispatcher, no Python autograd.Function); on cuda, the same formula wrapped in a Python ``autograd.Function``. A plain
cell module's forward in the common case is one C++ call, checks included (:func:`cpu_module_forward`). Under torch.func
transforms and forward-mode AD, which the ops do not support, a step computes the reference equations.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import backends
from ._autocast import register_autocast
from ._cells import CELL_KINDS, CellKind
from ._extension import extension, extension_loaded
from ._inputs import LayerInputs
from ._transforms import needs_reference_math

__all__ = ["cell_op", "cell_backward_op", "cell_forward_arg_names", "cell_output_names", "cell_backward_arg_names",
           "cell_grad_names", "cell_forward_args", "reference_cell", "cell_step", "cpu_module_forward", "CELL_OP_BACKENDS"]

# Backends whose library (rnnfused._C) has the single-step ops.
CELL_OP_BACKENDS = ("cpu", "cuda")


# ------------------------------------------------------------------------------------ argument lists (schemas)
def _only(present: bool, *names: str) -> List[str]:
    return list(names) if present else []


def cell_forward_arg_names(kind: CellKind) -> List[str]:
    """``<cell>_cell``'s arguments, in schema order."""
    return ["input", "hx"] + _only(kind.has_cell_state, "cx") + ["w_ih", "w_hh", "b_ih", "b_hh"]


def cell_output_names(kind: CellKind) -> List[str]:
    """``<cell>_cell``'s outputs: h' [B, H], c' [B, H] (cell state), saved [B, S*H] (saved activations)."""
    return ["h"] + _only(kind.has_cell_state, "c") + _only(kind.saved_per_unit > 0, "saved")


def cell_backward_arg_names(kind: CellKind) -> List[str]:
    """``<cell>_cell_backward``'s arguments, in schema order (h, saved, c: the forward's outputs)."""
    return (["grad_h"] + _only(kind.has_cell_state, "grad_c") + ["input", "hx"] + _only(kind.has_cell_state, "cx")
            + ["w_ih", "w_hh", "h"] + _only(kind.saved_per_unit > 0, "saved") + _only(kind.has_cell_state, "c")
            + ["output_mask"])


def cell_grad_names(kind: CellKind) -> List[str]:
    """The forward arguments whose gradients ``<cell>_cell_backward`` returns, in its output order."""
    return ["input", "hx"] + _only(kind.has_cell_state, "cx") + ["w_ih", "w_hh", "b_ih", "b_hh"]


# Which output_mask entry (input, hx, weights, biases) asks for a gradient; grad_cx is always computed.
_MASK_ENTRY = {"input": 0, "hx": 1, "w_ih": 2, "w_hh": 2, "b_ih": 3, "b_hh": 3}


def cell_op(kind: CellKind):
    return getattr(torch.ops.rnnfused, f"{kind.name}_cell").default


def cell_backward_op(kind: CellKind):
    return getattr(torch.ops.rnnfused, f"{kind.name}_cell_backward").default


def cell_forward_args(kind: CellKind, input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """The positional arguments of ``kind``'s cell op (cx is dropped for cells without a cell state)."""
    given = {"input": input, "hx": hx, "cx": cx, "w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}
    return tuple(given[n] for n in cell_forward_arg_names(kind))


def _as_tuple(output) -> tuple:
    """The op's outputs as a tuple (a one-output schema returns the tensor itself)."""
    return output if isinstance(output, tuple) else (output,)


def reference_cell(kind: CellKind, input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """The cell's reference step (the registry's ``kind.step``): the new state, (h', c') or (h',)."""
    state = (hx, cx) if kind.has_cell_state else (hx,)
    return tuple(kind.step(F.linear(input, w_ih, b_ih), state, w_hh, b_hh, None))


# ----------------------------------------------------------------------------------------------- fake functions
def _forward_fake(kind: CellKind):
    names = cell_forward_arg_names(kind)

    def fake(*args):
        a = dict(zip(names, args))
        input = a["input"]
        for name, t in a.items():
            # Mixed devices would otherwise land on this fake (Meta) and 'succeed' without computing.
            if t is not None and t.device != input.device:
                raise RuntimeError(f"rnnfused::{kind.name}_cell: {name} must be on {input.device} like input, "
                                   f"got {t.device}")
        B, H = input.shape[0], a["w_hh"].shape[1]
        widths = {"h": H, "c": H, "saved": kind.saved_per_unit * H}
        outs = tuple(input.new_empty(B, widths[n]) for n in cell_output_names(kind))
        return outs if len(outs) > 1 else outs[0]  # a one-output schema returns the tensor itself

    return fake


def _backward_fake(kind: CellKind):
    names = cell_backward_arg_names(kind)

    def fake(*args):
        a = dict(zip(names, args))
        input, mask, GH = a["input"], a["output_mask"], a["w_hh"].shape[0]
        shapes = {"input": input.shape, "hx": a["hx"].shape, "cx": a["hx"].shape, "w_ih": a["w_ih"].shape,
                  "w_hh": a["w_hh"].shape, "b_ih": (GH,), "b_hh": (GH,)}
        # Gradients left out are empty [0] tensors; every output is a fresh tensor (outputs must not alias).
        return tuple(input.new_empty(shapes[n] if n not in _MASK_ENTRY or mask[_MASK_ENTRY[n]] else (0,))
                     for n in cell_grad_names(kind))

    return fake


# ----------------------------------------------------------------------------------------------------- autograd
@dataclass(frozen=True)
class _CellAutograd:
    """The autograd formula of one kind's cell op (names in schema order, precomputed: it runs at every step)."""
    kind: CellKind
    forward_op: object
    backward_op: object
    arg_names: Tuple[str, ...]
    output_names: Tuple[str, ...]
    backward_arg_names: Tuple[str, ...]
    grad_names: Tuple[str, ...]

    @classmethod
    def of(cls, kind: CellKind) -> "_CellAutograd":
        return cls(kind, cell_op(kind), cell_backward_op(kind), tuple(cell_forward_arg_names(kind)),
                   tuple(cell_output_names(kind)), tuple(cell_backward_arg_names(kind)), tuple(cell_grad_names(kind)))

    def setup_context(self, ctx, inputs, output) -> None:
        outs = _as_tuple(output)
        if "saved" in self.output_names:  # only backward reads it
            ctx.mark_non_differentiable(outs[self.output_names.index("saved")])
        ctx.set_materialize_grads(False)  # an unused c' gives None, not a [B, H] zero fill
        ctx.save_for_backward(*inputs, *outs)

    def backward(self, ctx, *grads) -> tuple:
        values = dict(zip(self.arg_names + self.output_names, ctx.saved_tensors))
        needs = dict(zip(self.arg_names, ctx.needs_input_grad))
        grad_h = torch.zeros_like(values["hx"]) if grads[0] is None else grads[0]
        grad_c = grads[1] if self.kind.has_cell_state else None
        if torch.is_grad_enabled():
            got = self._differentiable_backward(values, grad_h, grad_c)
        else:
            has_bias = values["b_ih"] is not None
            mask = [needs["input"], needs["hx"], needs["w_ih"] or needs["w_hh"],
                    has_bias and (needs["b_ih"] or needs["b_hh"])]
            values.update(grad_h=grad_h, grad_c=grad_c, output_mask=mask)
            got = dict(zip(self.grad_names, self.backward_op(*[values[n] for n in self.backward_arg_names])))
        # What autograd did not ask for came back empty (or is an absent bias).
        return tuple(got[n] if needs[n] else None for n in self.arg_names)

    def _differentiable_backward(self, values: Dict[str, Optional[Tensor]], grad_h: Tensor,
                                 grad_c: Optional[Tensor]) -> Dict[str, Optional[Tensor]]:
        """Gradients that are themselves differentiable: autograd through the reference step."""
        with torch.enable_grad():
            leaves = {n: values[n] for n in self.arg_names if values[n] is not None}
            # Saved tensors that did not require grad become leaves here, so the recomputation has a graph.
            leaves = {n: (t if t.requires_grad else t.detach().requires_grad_()) for n, t in leaves.items()}
            full = {n: leaves.get(n) for n in ("input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh")}
            outs = reference_cell(self.kind, **full)
            pairs = [(o, g) for o, g in zip(outs, (grad_h, grad_c)) if g is not None]
            got = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()), [g for _, g in pairs],
                                      create_graph=True, allow_unused=True)
        return {n: (torch.zeros_like(leaves[n]) if g is None else g) for n, g in zip(leaves, got)}

    def eager_function(self) -> type:
        """The same autograd (setup_context, backward) as an autograd.Function whose forward calls the op below the
        Autograd key: what eager cell loops run. torch.library's autograd wrapper adds Python layers per call
        (argument defaults filled from the schema, a keyset record, the redispatch) that cost as much as a whole
        step at B=1. The forward takes ctx (old style): with a separate setup_context, Function.apply binds the
        arguments with inspect.signature on every call, slower still."""
        op, setup_context, backward = self.forward_op, self.setup_context, self.backward

        def forward(ctx, *args):
            with torch._C._AutoDispatchBelowAutograd():
                output = op(*args)
            setup_context(ctx, args, output)
            return output

        return type(f"rnnfused_{self.kind.name}_cell", (torch.autograd.Function,), {
            "forward": staticmethod(forward),
            "backward": staticmethod(backward),
        })


# Per cell kind name: the cell op, its eager autograd.Function, and the cpu backend's eager C++ step (filled by
# _register).
_FORWARD_OPS: Dict[str, object] = {}
_EAGER_FUNCTIONS: Dict[str, type] = {}
_CPU_EAGER_STEPS: Dict[str, object] = {}
_CPU_MODULE_FORWARDS: Dict[str, object] = {}


def _register() -> None:
    for kind in CELL_KINDS.values():
        fwd_name, bwd_name = f"{kind.name}_cell", f"{kind.name}_cell_backward"
        torch.library.register_fake(f"rnnfused::{fwd_name}")(_forward_fake(kind))
        torch.library.register_fake(f"rnnfused::{bwd_name}")(_backward_fake(kind))
        formula = _CellAutograd.of(kind)
        torch.library.register_autograd(formula.forward_op, formula.backward, setup_context=formula.setup_context)
        register_autocast(formula.forward_op, fwd_name)
        _FORWARD_OPS[kind.name] = formula.forward_op
        _EAGER_FUNCTIONS[kind.name] = formula.eager_function()
        _CPU_EAGER_STEPS[kind.name] = getattr(extension(), f"_cpu_cell_step_{kind.name}")
        _CPU_MODULE_FORWARDS[kind.name] = getattr(extension(), f"_cpu_cell_step_module_{kind.name}")


# ---------------------------------------------------------------------------------------------------- the step
# RNNFUSED_BACKEND as os.environ holds it: os.environ.get encodes the key on every call (about a microsecond, paid at
# every step of a cell loop); CPython's os.environ keeps its encoded items in `_data`.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey(backends.ENV_VAR) if hasattr(os.environ, "encodekey") else None


def _backend_env():
    if _ENV_DATA is None or _ENV_KEY is None:
        return os.environ.get(backends.ENV_VAR)
    return _ENV_DATA.get(_ENV_KEY)


# (backend argument, RNNFUSED_BACKEND) -> whether the selection rule gives CPU tensors the cpu backend: the rule's own
# answer (backends.resolve_backend), kept because a cell loop asks at every step.
_CPU_SELECTED: Dict[tuple, bool] = {}


def _cpu_backend_selected(backend: Optional[str]) -> bool:
    key = (backend, _backend_env())
    selected = _CPU_SELECTED.get(key)
    if selected is None:
        try:  # the cpu backend's availability does not depend on the dtype
            selected = backends.resolve_backend(backend, "cpu", torch.float32) == "cpu"
        except RuntimeError:
            selected = False  # the general path raises the rule's error
        _CPU_SELECTED[key] = selected
    return selected


def cpu_module_forward(kind: CellKind, backend: Optional[str], input, hx, cx, w_ih: Tensor, w_hh: Tensor,
                       b_ih: Optional[Tensor], b_hh: Optional[Tensor], input_size: int,
                       hidden_size: int) -> Optional[list]:
    """A whole plain ``Fused*Cell`` forward in one C++ call (``rnnfused._C._cpu_cell_step_module_<cell>``,
    csrc/cell/cell_step_eager.h) where the cpu backend runs it and nothing is special: ``[h', (c')]``, else None (the
    module's general path then runs: nn's checks and errors, other backends, transforms, compiling). ``hx``/``cx``:
    the states or None (zeros)."""
    if not _CPU_MODULE_FORWARDS or not _cpu_backend_selected(backend):
        return None
    if torch.compiler.is_compiling() or needs_reference_math():
        return None
    if not (isinstance(input, Tensor) and (hx is None or isinstance(hx, Tensor))
            and (cx is None or isinstance(cx, Tensor))):
        return None
    # [] where the general path must run (checked in C++: shapes, dtypes, CPU, tracing, autocast, dispatch modes).
    out = _CPU_MODULE_FORWARDS[kind.name](input, hx, cx, w_ih, w_hh, b_ih, b_hh, input_size, hidden_size)
    return out or None


# (backend argument, RNNFUSED_BACKEND, device, dtype) -> backend name: the selection rule's inputs and its answer,
# kept because a cell loop asks at every step (resolving costs about as much as a small step's kernel).
_RESOLVED: Dict[tuple, str] = {}


def cell_step(kind: CellKind, input: Tensor, hx: Tensor, cx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor],
              backend: Optional[str] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """One validated step (input [B, I], hx/cx [B, H]) on the selected backend: (h', c' or None)."""
    device, dtype = input.device, input.dtype
    key = (backend, _backend_env(), device, dtype)
    name = _RESOLVED.get(key)
    if name is None:
        name = backends.resolve_backend(backend, device, dtype)
        if name in CELL_OP_BACKENDS:  # built into rnnfused._C; lazily loaded backends are asked every time
            _RESOLVED[key] = name
    if needs_reference_math():  # torch.func transforms, forward-mode AD: the ops support neither
        out = reference_cell(kind, input, hx, cx, w_ih, w_hh, b_ih, b_hh)
        return out[0], (out[1] if kind.has_cell_state else None)
    if name not in CELL_OP_BACKENDS:  # triton, reference: their sequence op with T = 1
        x = LayerInputs(input.unsqueeze(0), hx, cx, w_ih, w_hh, b_ih, b_hh, None, None, False)
        _, h, c = backends.get_backend(name, device, dtype).run(kind, x)
        return h, c
    if name == "cpu" and not torch.compiler.is_compiling():
        # (h', [c']), or [] where the op must run: JIT tracing, autocast, dispatch modes, subclasses (checked in C++).
        out = _CPU_EAGER_STEPS[kind.name](input, hx, cx, w_ih, w_hh, b_ih, b_hh)
        if out:
            return out[0], (out[1] if kind.has_cell_state else None)
    # What must see an op (the op's registered autograd): torch.compile, tracing, autocast.
    needs_op = torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.is_autocast_enabled(device.type)
    # cell_forward_args, without its per-call dict (this runs at every step of a cell loop)
    args = (input, hx, cx, w_ih, w_hh, b_ih, b_hh) if kind.has_cell_state else (input, hx, w_ih, w_hh, b_ih, b_hh)
    if needs_op:
        out = _FORWARD_OPS[kind.name](*args)
    elif torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
        out = _EAGER_FUNCTIONS[kind.name].apply(*args)
    else:
        with torch._C._AutoDispatchBelowAutograd():  # nothing to record: the kernel alone
            out = _FORWARD_OPS[kind.name](*args)
    out = _as_tuple(out)  # (h', [c'], [saved])
    return out[0], (out[1] if kind.has_cell_state else None)


if extension_loaded():
    _register()
