"""Shared test helpers: random layer inputs, readable ids, comparisons against the reference."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from rnnfused._cells import CELL_KINDS, CellKind, cell_state_dtype
from rnnfused._autograd import reference_outputs
from rnnfused._inputs import LayerInputs
from rnnfused.functional import run_layer

CELLS = tuple(CELL_KINDS)  # lstm, gru, rnn_tanh, rnn_relu

has_cuda = torch.cuda.is_available()
requires_cuda = __import__("pytest").mark.skipif(not has_cuda, reason="needs a CUDA GPU")
triton_interpret = os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Case:
    """One layer-direction configuration; ``id`` reads like ``lstm-B3-T5-I4-H37-P3-rev-len-nobias``
    (``-rst0.3``: in-sequence resets, see ``resets``; ``-zo0.5``: zoneout, see ``zoneout``)."""

    cell: str = "lstm"
    B: int = 3
    T: int = 5
    I: int = 4
    H: int = 6
    proj: int = 0
    bias: bool = True
    reverse: bool = False
    lengths: Optional[Sequence[int]] = None
    resets: float = 0.0  # probability of a reset at each (t, b) (fixed seed; row 0 always resets at t = 1); 0: none
    zoneout: float = 0.0  # probability of keeping each unit's state (fixed seed; 0/1 masks, and p itself at
                          # t = 1 as in eval); 0: no zoneout

    @property
    def kind(self) -> CellKind:
        return CELL_KINDS[self.cell]

    @property
    def id(self) -> str:
        parts = [self.cell, f"B{self.B}", f"T{self.T}", f"I{self.I}", f"H{self.H}"]
        if self.proj:
            parts.append(f"P{self.proj}")
        if self.reverse:
            parts.append("rev")
        if self.lengths is not None:
            parts.append("len" + "_".join(map(str, self.lengths)))
        if not self.bias:
            parts.append("nobias")
        if self.resets:
            parts.append(f"rst{self.resets:g}")
        if self.zoneout:
            parts.append(f"zo{self.zoneout:g}")
        return "-".join(parts)


def resets_of(case: Case, device="cpu") -> Optional[torch.Tensor]:
    """[T, B] bool resets of a case (its own generator: the other inputs do not depend on it), or None."""
    if not case.resets:
        return None
    r = torch.rand(case.T, case.B, generator=torch.Generator().manual_seed(7)) < case.resets
    r[min(1, case.T - 1), 0] = True
    return r.to(device)


def zoneout_of(case: Case, dtype=torch.float64, device="cpu") -> Optional[torch.Tensor]:
    """[S, T, B, H] keep-masks of a case in the cell dtype of `dtype` (S = 2 with a cell state: h, c; its own
    generator), or None: 0/1 masks drawn with probability case.zoneout (training), and the fraction p at t = 1 (eval)."""
    if not case.zoneout:
        return None
    S = 2 if case.kind.has_cell_state else 1
    g = torch.Generator().manual_seed(8)
    m = (torch.rand(S, case.T, case.B, case.H, generator=g) < case.zoneout).to(torch.float64)
    m[:, min(1, case.T - 1)] = case.zoneout
    return m.to(device=device, dtype=cell_state_dtype(dtype))


def make_inputs(case: Case, dtype=torch.float64, device="cpu", requires_grad=True, seed=0) -> LayerInputs:
    g = torch.Generator().manual_seed(seed)
    k = case.kind
    H_out = case.proj or case.H
    scale = 1.0 / max(case.H, 1) ** 0.5

    def rand(*shape, s=1.0):
        t = (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * s
        return t.to(device=device, dtype=dtype).requires_grad_(requires_grad)

    GH = k.gates * case.H
    return LayerInputs(
        input=rand(case.T, case.B, case.I),
        h0=rand(case.B, H_out),
        c0=rand(case.B, case.H) if k.has_cell_state else None,
        w_ih=rand(GH, case.I, s=scale),
        w_hh=rand(GH, H_out, s=scale),
        b_ih=rand(GH, s=scale) if case.bias else None,
        b_hh=rand(GH, s=scale) if case.bias else None,
        w_hr=rand(case.proj, case.H, s=scale) if case.proj else None,
        lengths=torch.tensor(case.lengths, dtype=torch.int64) if case.lengths is not None else None,
        reverse=case.reverse,
        resets=resets_of(case, device),
        zoneout=zoneout_of(case, dtype, device),
    )


def tensor_fields(x: LayerInputs):
    """(name, tensor) for every differentiable input that is present."""
    names = ("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")
    return [(n, getattr(x, n)) for n in names if getattr(x, n) is not None]


def run_backend(kind: CellKind, x: LayerInputs, backend: str):
    """(output, h_n[, c_n]) of a backend, shaped as the reference returns them."""
    if backend == "reference":
        return tuple(reference_outputs(kind, x))
    out, h_n, c_n = run_layer(kind, x, backend)
    return (out, h_n, c_n) if kind.has_cell_state else (out, h_n)


def outputs_and_grads(kind: CellKind, x: LayerInputs, backend: str, upstream):
    outs = run_backend(kind, x, backend)
    leaves = [t for _, t in tensor_fields(x)]
    grads = torch.autograd.grad(outs, leaves, upstream, allow_unused=True)
    return outs, grads


def raised(fn):
    """The exception fn() raises, or None."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the tests compare whatever is raised
        return exc
    return None


def random_like(tensors, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t) for t in tensors]


def assert_close_all(actual, expected, names, atol, rtol):
    for name, a, e in zip(names, actual, expected):
        assert (a is None) == (e is None), f"{name}: one side has no gradient"
        if a is None:
            continue
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, msg=lambda m, n=name: f"{n}: {m}")


def _backend_device(backend: str) -> str:
    if backend == "cpu":
        return "cpu"
    if backend == "cuda":
        return "cuda"
    return "cuda" if has_cuda else "cpu"  # triton: the GPU, else the CPU interpreter


def backend_params(*names):
    """pytest params (backend, device) for each named backend, skipped where it cannot run here."""
    import pytest

    from rnnfused.backends import unavailable_reason

    params = []
    for name in names:
        device = _backend_device(name)
        reason = unavailable_reason(name, device, torch.float64)
        if name == "triton" and device == "cpu" and not triton_interpret:
            reason = reason or "the triton backend on the CPU needs TRITON_INTERPRET=1"
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, device, id=name, marks=marks))
    return params
