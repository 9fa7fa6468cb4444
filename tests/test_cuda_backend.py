"""The `cuda` backend on a GPU: parity with cuDNN (nn.LSTM/GRU/RNN) in float32/bfloat16/float16 with the error
bounded by cuDNN's own error against a float64 reference, odd shapes, lengths/reverse/proj, CUDA-graph replay on
and off, a caller's own CUDA-graph capture, gradcheck in float64 and opcheck of every op on CUDA tensors.

Everything here skips without a GPU (the CPU-only CI runs the kernel compile check instead).
"""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnfused
from rnnfused._inputs import LayerInputs, forward_args
from rnnfused._op_family import op_for
from rnnfused.backends import unavailable_reason

from helpers import Case, make_inputs, outputs_and_grads, random_like, run_backend, tensor_fields

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(unavailable_reason("cuda", "cuda") is not None,
                       reason=f"cuda backend unavailable: {unavailable_reason('cuda', 'cuda')}"),
]

LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]
DTYPE_IDS = ["float32", "bfloat16", "float16"]
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GRAD_NAMES = ("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


# ------------------------------------------------------------------------------------------------ cuDNN parity
def _cudnn_module(case: Case, x: LayerInputs, dtype) -> nn.Module:
    """An nn.LSTM/GRU/RNN on CUDA holding the weights of ``x`` (one layer, one direction, cuDNN's flat buffer)."""
    bias = x.b_ih is not None
    if case.cell == "lstm":
        mod = nn.LSTM(case.I, case.H, bias=bias, proj_size=case.proj)
    elif case.cell == "gru":
        mod = nn.GRU(case.I, case.H, bias=bias)
    else:
        mod = nn.RNN(case.I, case.H, bias=bias, nonlinearity=case.kind.nonlinearity)
    mod = mod.to(device="cuda", dtype=dtype)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(x.w_ih)
        mod.weight_hh_l0.copy_(x.w_hh)
        if bias:
            mod.bias_ih_l0.copy_(x.b_ih)
            mod.bias_hh_l0.copy_(x.b_hh)
        if case.proj:
            mod.weight_hr_l0.copy_(x.w_hr)
    mod.flatten_parameters()
    return mod


def _cudnn_outputs_and_grads(case: Case, x: LayerInputs, upstream):
    """(output, h_n[, c_n]) of cuDNN and the gradients w.r.t. the fields of ``x``, in tensor_fields order."""
    mod = _cudnn_module(case, x, x.input.dtype)
    inp = x.input.detach().clone().requires_grad_()
    h0 = x.h0.detach().unsqueeze(0).clone().requires_grad_()
    c0 = x.c0.detach().unsqueeze(0).clone().requires_grad_() if case.kind.has_cell_state else None
    seq = inp
    if x.lengths is not None:
        seq = pack_padded_sequence(inp, x.lengths, enforce_sorted=False)
    out, state = mod(seq, (h0, c0) if c0 is not None else h0)
    if x.lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=case.T)
    outs = (out, state[0][0], state[1][0]) if c0 is not None else (out, state[0])
    by_name = {"input": inp, "h0": h0, "c0": c0, "w_ih": mod.weight_ih_l0, "w_hh": mod.weight_hh_l0,
               "b_ih": getattr(mod, "bias_ih_l0", None), "b_hh": getattr(mod, "bias_hh_l0", None),
               "w_hr": getattr(mod, "weight_hr_l0", None)}
    leaves = [by_name[n] for n, _ in tensor_fields(x)]
    grads = torch.autograd.grad(outs, leaves, upstream)
    grads = [g.squeeze(0) if n in ("h0", "c0") else g for (n, _), g in zip(tensor_fields(x), grads)]
    return outs, grads


def _max_abs_error(a, truth):
    return float((a.detach().double() - truth.detach().double()).abs().max())


PARITY_CASES = [
    Case(cell, B=B, T=T, I=I, H=H)
    for cell in CELLS
    for (B, T, I, H) in ((1, 7, 5, 37), (8, 16, 32, 64), (3, 5, 16, 1000))
] + [
    Case(cell, B=4, T=9, I=8, H=48, lengths=(9, 2, 6, 1)) for cell in CELLS
] + [
    Case("lstm", B=4, T=8, I=8, H=40, proj=16),
    Case("lstm", B=3, T=8, I=8, H=40, proj=16, lengths=(3, 8, 5), bias=False),
]


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: c.id)
def test_error_bounded_by_cudnn_error(case, dtype):
    """|ours(dtype) - ref(float64)| <= 3·|cuDNN(dtype) - ref(float64)| + 2 ulp, for outputs and every gradient."""
    x64 = make_inputs(case, device="cuda")
    x_lo = make_inputs(case, dtype=dtype, device="cuda")
    upstream = random_like(run_backend(case.kind, x64, "reference"))
    truth, g_truth = outputs_and_grads(case.kind, x64, "reference", upstream)
    low_upstream = [u.to(dtype) for u in upstream]
    ours, g_ours = outputs_and_grads(case.kind, x_lo, "cuda", low_upstream)
    cudnn, g_cudnn = _cudnn_outputs_and_grads(case, x_lo, low_upstream)
    names = ["output", "h_n", "c_n"] + [f"grad_{n}" for n, _ in tensor_fields(x64)]
    eps = torch.finfo(dtype).eps
    for name, a, c, t in zip(names, list(ours) + list(g_ours), list(cudnn) + list(g_cudnn),
                             list(truth) + list(g_truth)):
        assert a.dtype == dtype and a.shape == t.shape, name
        ours_err, cudnn_err = _max_abs_error(a, t), _max_abs_error(c, t)
        bound = 3 * cudnn_err + 2 * eps * max(1.0, float(t.abs().max()))
        assert ours_err <= bound, f"{name}: error {ours_err:.3g} > bound {bound:.3g} (cuDNN's error {cudnn_err:.3g})"


# ------------------------------------------------------------------------------ float64 parity on odd shapes
ODD_CASES = [
    Case("lstm", B=1, T=4, I=3, H=37, reverse=True),
    Case("gru", B=2, T=3, I=5, H=1000, lengths=(1, 3), reverse=True),
    Case("rnn_relu", B=5, T=6, I=2, H=1000),
    Case("lstm", B=2, T=3, I=4, H=1000, proj=37, lengths=(3, 2)),
    Case("rnn_tanh", B=1, T=1, I=1, H=1, bias=False),
]


@pytest.mark.parametrize("case", ODD_CASES, ids=lambda c: c.id)
def test_odd_shapes_match_reference_float64(case):
    x = make_inputs(case, device="cuda")
    upstream = random_like(run_backend(case.kind, x, "reference"))
    expected, g_expected = outputs_and_grads(case.kind, x, "reference", upstream)
    actual, g_actual = outputs_and_grads(case.kind, x, "cuda", upstream)
    for name, a, e in zip(["output", "h_n", "c_n"] + [n for n, _ in tensor_fields(x)], list(actual) + list(g_actual),
                          list(expected) + list(g_expected)):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


# ------------------------------------------------------------------------------------------------ CUDA graphs
GRAPH_CASES = [Case("lstm", B=3, T=6, I=5, H=8, proj=4, lengths=(6, 2, 4)), Case("gru", B=2, T=5, I=3, H=12),
               Case("rnn_tanh", B=3, T=4, I=3, H=7, reverse=True, lengths=(4, 1, 3)), Case("rnn_relu", B=2, T=5, H=9)]


def _run_fwd_bwd(case, seed, dtype):
    x = make_inputs(case, dtype=dtype, device="cuda", seed=seed)
    if x.lengths is not None:  # new lengths values (same shape) each seed: they are graph inputs, not key parts
        g = torch.Generator().manual_seed(seed)
        x = x._replace(lengths=torch.randint(1, case.T + 1, (case.B,), generator=g))
    outs = run_backend(case.kind, x, "cuda")
    grads = torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], random_like(outs, seed=seed + 100))
    return [o.detach() for o in outs] + list(grads)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: c.id)
def test_cuda_graph_replay_gives_identical_results(case, dtype, monkeypatch):
    rnnfused.clear_cuda_graphs()
    monkeypatch.delenv("RNNFUSED_CUDA_GRAPHS", raising=False)
    plain = [_run_fwd_bwd(case, seed, dtype) for seed in range(4)]
    monkeypatch.setenv("RNNFUSED_CUDA_GRAPHS", "1")
    before = rnnfused.cuda_graph_stats()
    graphed = [_run_fwd_bwd(case, seed, dtype) for seed in range(4)]  # call 1 plain, 2 captures, 2-4 replay
    after = rnnfused.cuda_graph_stats()
    assert after["captures"] - before["captures"] == 2, after  # one forward graph, one backward graph
    assert after["replays"] - before["replays"] == 6, after
    for seed, (p, g) in enumerate(zip(plain, graphed)):
        for i, (a, b) in enumerate(zip(p, g)):
            # Same kernels, same cuBLAS calls on the same data: bitwise equal is expected.
            assert torch.equal(a, b), f"call {seed}, result {i}: max diff {float((a - b).abs().max())}"
    rnnfused.clear_cuda_graphs()
    assert rnnfused.cuda_graph_stats()["cached"] == 0


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_float64_with_cuda_graphs(cell, monkeypatch):
    """gradcheck calls the ops many times with perturbed inputs of one shape: every call after the second replays."""
    monkeypatch.setenv("RNNFUSED_CUDA_GRAPHS", "1")
    case = Case(cell, B=2, T=4, I=3, H=5, lengths=(4, 2))
    x = make_inputs(case, device="cuda")
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cuda")

    before = rnnfused.cuda_graph_stats()["replays"]
    assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-7, rtol=1e-5)
    assert rnnfused.cuda_graph_stats()["replays"] > before
    rnnfused.clear_cuda_graphs()


@pytest.mark.parametrize("graphs", ["graphs-on", "graphs-off"])
@pytest.mark.parametrize("cell", CELLS)
def test_runs_inside_a_callers_cuda_graph_capture(cell, graphs, monkeypatch):
    """Under torch.cuda.graph the op runs its plain loop, which becomes part of the caller's graph."""
    if graphs == "graphs-on":
        monkeypatch.setenv("RNNFUSED_CUDA_GRAPHS", "1")
    else:
        monkeypatch.delenv("RNNFUSED_CUDA_GRAPHS", raising=False)
    case = Case(cell, B=3, T=5, I=4, H=16)
    x = make_inputs(case, dtype=torch.float32, device="cuda", requires_grad=False)
    op = op_for(case.kind)
    static = x._replace(input=x.input.clone(), h0=x.h0.clone())
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture
        op(*forward_args(case.kind, static))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = op(*forward_args(case.kind, static))
    for seed in (3, 4):
        fresh = make_inputs(case, dtype=torch.float32, device="cuda", requires_grad=False, seed=seed)
        static.input.copy_(fresh.input)
        static.h0.copy_(fresh.h0)
        graph.replay()
        expected = op(*forward_args(case.kind, x._replace(input=fresh.input, h0=fresh.h0)))
        torch.cuda.synchronize()
        for a, b in zip(static_out, expected):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------- ops and paths
@pytest.mark.parametrize("case", [Case(c) for c in CELLS] + [Case("lstm", proj=3, lengths=(5, 1, 3), reverse=True)],
                         ids=lambda c: c.id)
def test_gradcheck_and_opcheck_every_op_on_cuda(case):
    x = make_inputs(case, device="cuda")
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cuda")

    tensors = [t for _, t in tensor_fields(x)]
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)
    fwd = op_for(case.kind)
    torch.library.opcheck(fwd, forward_args(case.kind, x))
    outs = fwd(*forward_args(case.kind, x))
    d = lambda t: None if t is None else t.detach()  # noqa: E731
    output, h_n = outs[0].detach(), outs[1].detach()
    if case.kind.has_cell_state:
        args = (torch.randn_like(output), torch.randn_like(h_n), torch.randn_like(outs[2]), d(x.input), d(x.h0),
                d(x.c0), d(x.w_ih), d(x.w_hh), d(x.w_hr), x.lengths, x.reverse, output, outs[3], outs[4])
    else:
        extra = (outs[2],) if case.kind.saved_per_unit else ()
        args = (torch.randn_like(output), torch.randn_like(h_n), d(x.input), d(x.h0), d(x.w_ih), d(x.w_hh),
                x.lengths, x.reverse, output) + extra
    torch.library.opcheck(getattr(torch.ops.rnnfused, f"{case.kind.name}_backward").default, args)


def test_mixed_devices_are_an_error_naming_the_argument():
    x = make_inputs(Case("lstm"), dtype=torch.float32, device="cuda", requires_grad=False)
    bad = x._replace(w_hh=x.w_hh.cpu())
    with pytest.raises(RuntimeError, match="w_hh"):
        op_for(Case("lstm").kind)(*forward_args(Case("lstm").kind, bad))


def test_lengths_on_the_gpu_are_accepted_and_must_be_int64():
    """lengths already on the input's GPU: used without a host copy or value check, same results."""
    x = make_inputs(Case("gru", lengths=(5, 2, 4)), dtype=torch.float32, device="cuda", requires_grad=False)
    op = op_for(Case("gru").kind)
    for a, b in zip(op(*forward_args(Case("gru").kind, x._replace(lengths=x.lengths.cuda()))),
                    op(*forward_args(Case("gru").kind, x))):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="lengths"):
        op(*forward_args(Case("gru").kind, x._replace(lengths=x.lengths.cuda().int())))


@pytest.mark.parametrize("cell", CELLS)
def test_cuda_path_follows_the_fit_rule_and_the_crossover_table(cell):
    """bf16 H=256 fits the persistent kernels; the shipped (unmeasured) crossover table allows them up to batch 64."""
    path, why = rnnfused.cuda_path(cell, 512, 8, 256, 256, dtype=torch.bfloat16, explain=True)
    assert path == "persistent" and "batch 8 <= 64" in why, why
    path, why = rnnfused.cuda_path(cell, 512, 256, 256, 256, dtype=torch.bfloat16, explain=True)
    assert path == "stepwise" and "batch 256 > 64" in why, why
