"""The Triton family of the LayerNorm LSTM/GRU ops (rnnfused::layernorm_<cell>_triton and its backward; equations and
layout: rnnfused/_layer_norm_ops.py), in the Triton interpreter without a GPU: outputs and every gradient against the
reference equations (reference_outputs, differentiated by torch autograd) in float64 with random non-trivial γ/β and
biases, both directions, with lengths, resets and zoneout masks, partial tiles (H = 7: G·H is no power of two) and
several row blocks; float64 gradcheck; train=False; float32; the errors."""
from __future__ import annotations

import pytest
import torch

import rnnfused
from rnnfused._layer_norm_ops import (LAYER_NORM_KINDS, LayerNormInputs, backward_arg_names, forward_arg_names,
                                      forward_args, forward_output_names, grad_names, layer_norm_op, op_name,
                                      reference_outputs, saved_width, schema_types)

from helpers import backend_params

TRITON = backend_params("triton")[0]
DEVICE = TRITON.values[1]
pytestmark = TRITON.marks
CELLS = tuple(LAYER_NORM_KINDS)  # lstm, gru
DIFFERENTIABLE = ("xg", "h0", "c0", "w_hh", "b_hh", "ln_hh_weight", "ln_c_weight", "ln_c_bias")


@pytest.fixture(scope="module", autouse=True)
def triton_ops():
    rnnfused.backends.unavailable_reason("triton", DEVICE)  # loads the backend: registers its ops, these included


def make_inputs(cell: str, T=5, B=5, H=7, dtype=torch.float64, reverse=False, lengths=None, resets=None,
                zoneout=False, bias=True, seed=0) -> LayerNormInputs:
    """Random inputs of a layer-direction; γ near 1, β and biases non-zero (a bug that drops any of them shows)."""
    kind = LAYER_NORM_KINDS[cell]
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s, scale=1.0: (torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype)  # noqa: E731
    GH = kind.gates * H
    lstm = kind.has_cell_state
    masks = None
    if zoneout:
        # Bernoulli keep-masks (training) on one state, fractional ones (eval: p) on the other: both kinds of value.
        S = 2 if lstm else 1
        masks = (torch.rand(S, T, B, H, generator=g) < 0.3).double()
        masks[-1] = torch.rand(T, B, H, generator=g) * 0.6
        masks = masks.to(torch.float64 if dtype == torch.float64 else torch.float32)
    return LayerNormInputs(
        xg=rand(T, B, GH), h0=rand(B, H, scale=0.5), c0=rand(B, H, scale=0.5) if lstm else None,
        w_hh=rand(GH, H, scale=H ** -0.5), b_hh=rand(GH, scale=0.3) if (bias and not lstm) else None,
        ln_hh_weight=(1 + rand(GH, scale=0.3)), ln_c_weight=(1 + rand(H, scale=0.3)) if lstm else None,
        ln_c_bias=rand(H, scale=0.3) if lstm else None,
        lengths=None if lengths is None else torch.tensor(lengths, dtype=torch.int64), reverse=reverse,
        resets=resets, zoneout=masks)


def leaves_of(x: LayerNormInputs) -> LayerNormInputs:
    """x with fresh leaves (requires_grad) on DEVICE for the differentiable tensors."""
    moved = {f: getattr(x, f).detach().to(DEVICE).requires_grad_() for f in DIFFERENTIABLE
             if getattr(x, f) is not None}
    other = {f: None if getattr(x, f) is None else getattr(x, f).to(DEVICE) for f in ("resets", "zoneout")}
    return x._replace(**moved, **other)


def run_op(cell: str, x: LayerNormInputs):
    """(output, h_n[, c_n]) of the Triton op, plus the whole result."""
    kind = LAYER_NORM_KINDS[cell]
    res = layer_norm_op(kind, "_triton")(*forward_args(kind, x))
    return res[:3 if kind.has_cell_state else 2], res


def assert_matches_reference(cell: str, x: LayerNormInputs, atol=1e-10, rtol=1e-9, seed=7):
    """Outputs and the gradients of every differentiable input (random upstream on every output) equal the
    reference's, through torch.autograd.grad."""
    xo, xr = leaves_of(x), x._replace(**{f: getattr(x, f).detach().clone().requires_grad_() for f in DIFFERENTIABLE
                                        if getattr(x, f) is not None})
    got, _ = run_op(cell, xo)
    expected = reference_outputs(LAYER_NORM_KINDS[cell], xr)
    g = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(e.shape, generator=g, dtype=torch.float64).to(e.dtype) for e in expected]
    names = ["output", "h_n", "c_n"]
    for name, a, e in zip(names, got, expected):
        torch.testing.assert_close(a.detach().cpu(), e.detach(), atol=atol, rtol=rtol,
                                   msg=lambda m, n=name: f"{n}: {m}")
    fields = [f for f in DIFFERENTIABLE if getattr(x, f) is not None]
    got_grads = torch.autograd.grad(got, [getattr(xo, f) for f in fields], [u.to(DEVICE) for u in upstream])
    expected_grads = torch.autograd.grad(expected, [getattr(xr, f) for f in fields], upstream)
    for name, a, e in zip(fields, got_grads, expected_grads):
        torch.testing.assert_close(a.cpu(), e, atol=atol, rtol=rtol, msg=lambda m, n=name: f"grad {n}: {m}")


def reset_pattern(T=5, B=5, seed=3):
    r = torch.rand(T, B, generator=torch.Generator().manual_seed(seed)) < 0.35  # [T, B]
    r[1, 0] = r[T - 1, 1] = r[0, 2] = True  # a reset after the first step, at the last step, and a no-op at t = 0
    return r


LENGTHS = [5, 2, 4, 1, 3]  # T = 5, unsorted, one row of length 1
CASES = {
    "plain": dict(),
    "lengths": dict(lengths=LENGTHS),
    "resets": dict(resets=reset_pattern()),
    "zoneout-lengths": dict(zoneout=True, lengths=LENGTHS),
    "zoneout-resets": dict(zoneout=True, resets=reset_pattern(seed=4)),
}


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference_float64(cell, case, reverse):
    """B=5, H=7: one partial row block and partial gate tiles (H=7 in 8 lanes; G·H = 28 or 21)."""
    assert_matches_reference(cell, make_inputs(cell, reverse=reverse, seed=len(case), **CASES[case]))


@pytest.mark.parametrize("cell,reverse", [("lstm", True), ("gru", False)])
def test_several_row_blocks(cell, reverse):
    """B=37 rows: three programs of 16 rows (the last partial), H=3; resets in random rows: no row or block may
    touch another's state, gradient accumulators or h0/c0 sums."""
    T, B = 4, 37
    resets = torch.rand(T, B, generator=torch.Generator().manual_seed(2)) < 0.4
    assert_matches_reference(cell, make_inputs(cell, T=T, B=B, H=3, reverse=reverse, resets=resets, zoneout=True))


def test_gru_without_recurrent_bias():
    assert_matches_reference("gru", make_inputs("gru", bias=False, lengths=LENGTHS, reverse=True))


@pytest.mark.parametrize("cell,case", [("lstm", dict(reverse=True, lengths=[3, 1], zoneout=True)),
                                       ("gru", dict(reverse=True, resets=torch.tensor([[False, True], [True, False],
                                                                                       [False, True]]),
                                                    zoneout=True))], ids=["lstm-rev-lengths", "gru-rev-resets"])
def test_gradcheck(cell, case):
    """float64 gradcheck of the op (tiny: T=3, B=2, H=2, zoneout masks) with respect to every differentiable input.
    fast_mode (vᵀJu for random u, v) fails on any wrong Jacobian entry w.p. 1 at a fraction of the interpreted
    launches; undefined upstream gradients are the family's autograd formula's business (_layer_norm_ops.py)."""
    x = leaves_of(make_inputs(cell, T=3, B=2, H=2, **case))
    kind = LAYER_NORM_KINDS[cell]
    fields = [f for f in DIFFERENTIABLE if getattr(x, f) is not None]

    def fn(*tensors):
        return run_op(cell, x._replace(**dict(zip(fields, tensors))))[0]

    assert torch.autograd.gradcheck(fn, [getattr(x, f) for f in fields], fast_mode=True,
                                      check_undefined_grad=False)
    assert kind.has_cell_state == (len(fn(*[getattr(x, f) for f in fields])) == 3)


@pytest.mark.parametrize("cell", CELLS)
def test_train_false_returns_no_saved_tensors(cell):
    x = leaves_of(make_inputs(cell, lengths=LENGTHS, zoneout=True, reverse=True))
    kind = LAYER_NORM_KINDS[cell]
    with torch.no_grad():
        _, trained = run_op(cell, x)
        _, inferred = run_op(cell, x._replace(train=False))
    n_state = 3 if kind.has_cell_state else 2
    for a, e in zip(inferred[:n_state], trained[:n_state]):
        torch.testing.assert_close(a, e, atol=0, rtol=0)
    H = x.h0.shape[1]
    assert trained[n_state].shape == (5, 5, saved_width(kind, H))
    for t in inferred[n_state:]:
        assert t.shape == (0,)
    if kind.has_cell_state:
        assert trained[-1].shape == (5, 5, H)
        # cells[t] is c_t after zoneout; the reverse direction's last processed step is t = 0.
        torch.testing.assert_close(trained[-1][0].to(x.xg.dtype), trained[2], atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_float32(cell):
    """float32 inputs (float32 arithmetic) against the float64 reference, loosely; saved in float32."""
    x = make_inputs(cell, dtype=torch.float32, resets=reset_pattern(), zoneout=True)
    assert_matches_reference(cell, x, atol=2e-5, rtol=2e-4)
    _, res = run_op(cell, leaves_of(x))
    assert res[-1].dtype == torch.float32 and res[0].dtype == torch.float32


def _raises(cell: str, match: str, backward=False, **changes):
    kind = LAYER_NORM_KINDS[cell]
    x = leaves_of(make_inputs(cell, T=2, B=2, H=2))
    if not backward:
        with pytest.raises(RuntimeError, match=match):
            run_op(cell, x._replace(**changes))
        return
    with torch.no_grad():
        _, res = run_op(cell, x)
    out = dict(zip(("output", "h_n", "c_n", "saved", "cells") if kind.has_cell_state
                   else ("output", "h_n", "saved"), res))
    values = dict(x._asdict(), grad_output=torch.ones_like(out["output"]), grad_h_n=torch.ones_like(out["h_n"]),
                  grad_c_n=torch.ones_like(out["h_n"]), **out)
    values.update(changes)
    with pytest.raises(RuntimeError, match=match):
        layer_norm_op(kind, "_triton", backward=True)(*[values[n] for n in backward_arg_names(kind)])


def test_errors_name_the_argument():
    f64 = torch.float64
    _raises("lstm", "w_hh must be 2-D", w_hh=torch.zeros(8, 3, dtype=f64))
    _raises("lstm", "ln_c_weight must have shape", ln_c_weight=torch.ones(3, dtype=f64))
    _raises("gru", "ln_hh_weight must have dtype", ln_hh_weight=torch.ones(6, dtype=torch.float32))
    _raises("gru", "b_hh must have shape", b_hh=torch.ones(5, dtype=f64))
    _raises("gru", "xg must have shape", xg=torch.zeros(2, 2, 9, dtype=f64))
    _raises("lstm", "h0 must have shape", h0=torch.zeros(3, 2, dtype=f64))
    _raises("lstm", "lengths must lie in", lengths=torch.tensor([3, 1]))
    _raises("gru", "resets cannot be combined with lengths", lengths=torch.tensor([2, 1]),
            resets=torch.zeros(2, 2, dtype=torch.bool))
    _raises("lstm", "zoneout must have shape", zoneout=torch.zeros(1, 2, 2, 2, dtype=f64))
    _raises("gru", "zoneout must have dtype", zoneout=torch.zeros(1, 2, 2, 2, dtype=torch.float32))
    _raises("lstm", "saved must be", backward=True, saved=torch.zeros(2, 2, 3, dtype=f64))
    _raises("lstm", "cells must be", backward=True, cells=torch.zeros(2, 2, 2, dtype=torch.float32))
    _raises("gru", "grad_output must be", backward=True, grad_output=torch.zeros(2, 3, 2, dtype=f64))
    _raises("gru", "output must be a 3-D", backward=True, output=torch.zeros(2, 2, dtype=f64))


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("cell", CELLS)
def test_schema(cell, backward):
    """The schema of _layer_norm_ops.py's argument lists; equal to the C++ op's where that is registered."""
    kind = LAYER_NORM_KINDS[cell]
    names = backward_arg_names(kind) if backward else forward_arg_names(kind)
    n_out = len(grad_names(kind) if backward else forward_output_names(kind))
    schema = str(layer_norm_op(kind, "_triton", backward)._schema)
    name = op_name(kind, "_triton", backward)
    assert schema == f"rnnfused::{name}({', '.join(schema_types(names))}) -> ({', '.join(['Tensor'] * n_out)})"
    cpp = getattr(torch.ops.rnnfused, op_name(kind, "", backward), None)
    if cpp is not None:
        assert schema.replace(name, op_name(kind, "", backward)) == str(cpp.default._schema)


@pytest.mark.parametrize("cell,case", [("lstm", dict(reverse=True, lengths=[2, 1], zoneout=True)),
                                       ("gru", dict(resets=torch.tensor([[False, False], [True, False]])))],
                         ids=["lstm", "gru"])
def test_opcheck(cell, case):
    """Schema, fake (the family's shape-only fakes) and autograd registration, and the op under AOT dispatch."""
    kind = LAYER_NORM_KINDS[cell]
    x = leaves_of(make_inputs(cell, T=2, B=2, H=2, **case))
    torch.library.opcheck(layer_norm_op(kind, "_triton"), forward_args(kind, x))
