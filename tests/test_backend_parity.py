"""Every fused backend against the reference: outputs and all gradients (random upstream), gradcheck in float64,
and float32/bfloat16 error bounded by the reference's own error in that dtype."""
import pytest
import torch

from helpers import (Case, assert_close_all, backend_params, make_inputs, outputs_and_grads, random_like,
                     run_backend, tensor_fields)


def _cases(cell):
    cases = [
        Case(cell),
        Case(cell, reverse=True),
        Case(cell, B=3, T=5, lengths=(5, 2, 4)),
        Case(cell, B=4, T=5, lengths=(1, 5, 3, 3), reverse=True),
        Case(cell, bias=False),
        Case(cell, B=1, T=1, I=1, H=1),
        Case(cell, B=2, T=3, I=7, H=37),
    ]
    if cell == "lstm":
        cases += [Case(cell, proj=3), Case(cell, proj=2, B=3, lengths=(2, 5, 4), reverse=True)]
    return cases


ALL_CASES = [c for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu") for c in _cases(cell)]
GRADCHECK_CASES = [c for c in ALL_CASES if c.H < 37]

# The fused backends this file covers; the Triton backend has its own, interpreter-sized file.
BACKENDS = backend_params("cpu", "cuda")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_matches_reference_float64(case, backend, device):
    x = make_inputs(case, device=device)
    ref_outs = run_backend(case.kind, x, "reference")
    upstream = random_like(ref_outs)
    expected, g_expected = outputs_and_grads(case.kind, x, "reference", upstream)
    actual, g_actual = outputs_and_grads(case.kind, x, backend, upstream)
    assert_close_all(actual, expected, ["output", "h_n", "c_n"], atol=1e-10, rtol=1e-10)
    assert_close_all(g_actual, g_expected, [n for n, _ in tensor_fields(x)], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=lambda c: c.id)
def test_gradcheck(case, backend, device):
    x = make_inputs(case, device=device)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), backend)

    assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-7, rtol=1e-5)


def _max_error(actual, expected):
    return max(float((a.detach().double() - e.detach().double()).abs().max()) for a, e in zip(actual, expected))


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("case", [Case("lstm", B=4, T=12, I=16, H=32), Case("gru", B=4, T=12, I=16, H=32),
                                  Case("rnn_tanh", B=4, T=12, I=16, H=32),
                                  Case("lstm", B=4, T=12, I=16, H=32, proj=8, lengths=(12, 3, 7, 1), reverse=True)],
                         ids=lambda c: c.id)
def test_low_precision_error_bounded_by_reference_error(case, dtype, backend, device):
    """|backend(dtype) - ref(float64)| <= 3 · |ref(dtype) - ref(float64)| + tiny, for outputs and gradients."""
    x64 = make_inputs(case, device=device)
    x_lo = make_inputs(case, dtype=dtype, device=device)
    upstream = random_like(run_backend(case.kind, x64, "reference"))
    out64, g64 = outputs_and_grads(case.kind, x64, "reference", upstream)
    ref_lo, g_ref_lo = outputs_and_grads(case.kind, x_lo, "reference", [u.to(dtype) for u in upstream])
    got_lo, g_got_lo = outputs_and_grads(case.kind, x_lo, backend, [u.to(dtype) for u in upstream])
    for got, ref, truth in ((got_lo, ref_lo, out64), (g_got_lo, g_ref_lo, g64)):
        for a, r, t in zip(got, ref, truth):
            assert a.dtype == dtype
            bound = 3 * _max_error([r], [t]) + 1e-6
            assert _max_error([a], [t]) <= bound
