"""The Triton backend (triton_kernels/, rnnfused._triton).

Without a GPU the kernels run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1): float64
parity with the reference (outputs and every gradient, random upstream) and gradcheck, for the per-step kernels
and for the persistent kernel in its single-program form (one program owns every tile; the grid barrier is a
no-op). Shapes are tiny: each interpreted launch costs ~0.1 s. GPU-only tests (skipped here): cuDNN parity in
bf16/fp16/fp32, float64 gradcheck on CUDA, torch.compile with Inductor, no recompilation across T.
"""
import json
import os

import pytest
import torch

import rnnfused
from rnnfused import backends
from rnnfused._cells import CELL_KINDS
from rnnfused._inputs import forward_args
from rnnfused._op_family import op_for

from helpers import (CELLS, Case, assert_close_all, has_cuda, make_inputs, outputs_and_grads, random_like,
                     requires_cuda, run_backend, tensor_fields, triton_interpret)

triton = pytest.importorskip("triton")

RUNS_HERE = triton_interpret or has_cuda
pytestmark = pytest.mark.skipif(not RUNS_HERE, reason="needs a CUDA GPU or TRITON_INTERPRET=1")
DEVICE = "cuda" if has_cuda and not triton_interpret else "cpu"

if RUNS_HERE:
    from rnnfused._triton import configs, dispatch
    from rnnfused._triton.launch_common import interpreted

PATHS = ["step", "persistent"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """Runs the test on the per-step kernels and on the persistent kernel (one program in the interpreter)."""
    monkeypatch.setenv("RNNFUSED_TRITON_PATH", request.param)
    return request.param


def _parity_cases(cell):
    cases = [Case(cell, B=2, T=3, I=3, H=5), Case(cell, B=2, T=3, I=7, H=37),
             Case(cell, B=3, T=4, I=3, H=5, lengths=(4, 1, 3), reverse=True),
             Case(cell, B=3, T=4, I=3, H=5, lengths=(2, 4, 1)), Case(cell, B=2, T=3, I=3, H=5, bias=False),
             Case(cell, B=1, T=1, I=1, H=1)]
    if cell == "lstm":
        cases += [Case(cell, B=2, T=3, I=3, H=5, proj=3),
                  Case(cell, B=3, T=4, I=3, H=6, proj=2, lengths=(2, 4, 3), reverse=True, bias=False)]
    return cases


PARITY_CASES = [c for cell in CELLS for c in _parity_cases(cell)]


@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: c.id)
def test_matches_reference_float64(case, path):
    x = make_inputs(case, device=DEVICE)
    upstream = random_like(run_backend(case.kind, x, "reference"))
    expected, g_expected = outputs_and_grads(case.kind, x, "reference", upstream)
    actual, g_actual = outputs_and_grads(case.kind, x, "triton", upstream)
    assert_close_all(actual, expected, ["output", "h_n", "c_n"], atol=1e-10, rtol=1e-10)
    assert_close_all(g_actual, g_expected, [n for n, _ in tensor_fields(x)], atol=1e-10, rtol=1e-10)


def _gradcheck(case, device=DEVICE):
    x = make_inputs(case, device=device)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "triton")

    # fast_mode checks vᵀJu for random u, v: a wrong entry anywhere in J still fails it (w.p. 1), at a fraction
    # of the interpreter calls of the full Jacobian.
    assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=True)


# Every cell at H=5 and H=37 (two unit tiles and two K chunks in the interpreter), with lengths, reverse, no bias
# and the projection spread over the cases; the persistent form at H=5 with lengths (and reverse) for every cell,
# and at H=37. Each interpreted gradcheck is ~30 op calls: the set is sized to keep CI within minutes.
STEP_GRADCHECK = [Case("lstm", B=2, T=3, I=3, H=5, proj=3, lengths=(3, 1), reverse=True, bias=False),
                  Case("gru", B=2, T=3, I=3, H=5, lengths=(1, 3), reverse=True, bias=False),
                  Case("rnn_tanh", B=2, T=3, I=3, H=5, lengths=(2, 3)),
                  Case("rnn_relu", B=2, T=3, I=3, H=5)] + [Case(c, B=2, T=3, I=3, H=37) for c in CELLS]
PERSISTENT_GRADCHECK = [Case(c, B=2, T=3, I=3, H=5, lengths=(3, 2), reverse=c in ("lstm", "rnn_relu"),
                             bias=c != "gru") for c in CELLS] + [Case("gru", B=2, T=3, I=3, H=37)]


@pytest.mark.parametrize("case", STEP_GRADCHECK, ids=lambda c: c.id)
def test_gradcheck_step_kernels(case, monkeypatch):
    monkeypatch.setenv("RNNFUSED_TRITON_PATH", "step")
    _gradcheck(case)


@pytest.mark.parametrize("case", PERSISTENT_GRADCHECK, ids=lambda c: c.id)
def test_gradcheck_persistent_kernel(case, monkeypatch):
    monkeypatch.setenv("RNNFUSED_TRITON_PATH", "persistent")
    _gradcheck(case)


# --------------------------------------------------------------------------------------- registration and rules
@pytest.mark.parametrize("name", [n for c in CELLS for n in (c, f"{c}_backward")])
def test_schemas_equal_the_cpp_ops(name):
    if not rnnfused.extension_loaded():
        pytest.skip(rnnfused.EXTENSION_ERROR)
    backends.unavailable_reason("triton", DEVICE)  # loads the backend
    triton_schema = getattr(torch.ops.rnnfused, f"{name}_triton").default._schema
    cpp_schema = getattr(torch.ops.rnnfused, name).default._schema
    assert str(triton_schema).replace(f"{name}_triton", name) == str(cpp_schema)


@pytest.mark.parametrize("case", [Case("lstm", B=2, T=3, I=3, H=5, proj=2, lengths=(3, 1), reverse=True),
                                  Case("gru", B=2, T=3, I=3, H=5, lengths=(2, 3))], ids=lambda c: c.id)
def test_opcheck_per_step_path(case, monkeypatch):
    """Schema, fake and autograd registration (either path is the same opaque recurrence node under tracing)."""
    monkeypatch.setenv("RNNFUSED_TRITON_PATH", "step")
    x = make_inputs(case, device=DEVICE)
    torch.library.opcheck(op_for(case.kind, "_triton"), forward_args(case.kind, x))


def test_the_rule_picks_triton_only_when_asked_for_on_cpu(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.resolve_backend(None, "cpu", torch.float64) == "cpu"
    if interpreted():
        assert backends.resolve_backend("triton", "cpu", torch.float64) == "triton"
        monkeypatch.setenv(backends.ENV_VAR, "triton")
        assert backends.resolve_backend(None, "cpu", torch.float32) == "triton"
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            backends.resolve_backend("triton", "cuda", torch.float32)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    from rnnfused import _triton_backend

    monkeypatch.setattr(_triton_backend, "interpreted", lambda: False)
    assert "TRITON_INTERPRET=1" in _triton_backend.BACKEND.unavailable(torch.device("cpu"), torch.float32)
    assert _triton_backend.BACKEND.unavailable(torch.device("cuda"), torch.float32) is None


def test_dispatch_reports_the_path(monkeypatch):
    monkeypatch.delenv(dispatch.PATH_ENV, raising=False)
    assert dispatch.choose_path(False, interpreted=False).path == "persistent"
    assert dispatch.choose_path(False, interpreted=True).path == "step"
    choice = dispatch.choose_path(True, interpreted=False)
    assert choice.path == "step" and "projection" in choice.reason
    monkeypatch.setenv(dispatch.PATH_ENV, "persistent")
    choice = dispatch.choose_path(False, interpreted=True)
    assert choice.path == "persistent" and choice.num_programs(7, torch.device("cpu"), True) == 1
    monkeypatch.setenv(dispatch.PATH_ENV, "step")
    assert dispatch.choose_path(False, interpreted=False).path == "step"
    monkeypatch.setenv(dispatch.PATH_ENV, "fastest")
    with pytest.raises(ValueError, match="RNNFUSED_TRITON_PATH"):
        dispatch.choose_path(False, interpreted=False)


def test_config_cache_is_keyed_per_shape_family_not_per_T(path):
    """Two sequence lengths, same shapes otherwise: one cache entry per (direction, path) — T is not in the key."""
    configs.CONFIG_CACHE.clear()
    for T in (2, 5):
        case = Case("gru", B=2, T=T, I=3, H=5)
        x = make_inputs(case, device=DEVICE)
        outs = run_backend(case.kind, x, "triton")
        torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], [torch.ones_like(o) for o in outs])
        assert len(configs.CONFIG_CACHE) == 2, configs.CONFIG_CACHE
    assert {k[:2] for k in configs.CONFIG_CACHE} == {("forward", path), ("backward", path)}


def test_bad_lengths_are_errors_naming_lengths():
    x = make_inputs(Case("gru", B=2, T=3, I=3, H=5), device=DEVICE, requires_grad=False)
    op = op_for(CELL_KINDS["gru"], "_triton")
    for bad in (torch.tensor([4, 1]), torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), torch.tensor([1, 2, 3])):
        with pytest.raises(RuntimeError, match="lengths"):
            op(*forward_args(CELL_KINDS["gru"], x._replace(lengths=bad)))


def test_bad_shapes_are_errors_naming_the_argument():
    x = make_inputs(Case("lstm", B=2, T=3, I=3, H=5), device=DEVICE, requires_grad=False)
    op = op_for(CELL_KINDS["lstm"], "_triton")
    with pytest.raises(RuntimeError, match="c0"):
        op(*forward_args(CELL_KINDS["lstm"], x._replace(c0=x.c0[:, :2])))
    with pytest.raises(RuntimeError, match="w_ih"):
        op(*forward_args(CELL_KINDS["lstm"], x._replace(w_ih=x.w_ih[:, :2])))


# ------------------------------------------------------------------------------------------------- GPU only
def _max_error(a, b):
    return float((a.detach().double() - b.detach().double()).abs().max())


def _cudnn_outputs_and_grads(case, x, upstream):
    """nn.LSTM / nn.GRU / nn.RNN (cuDNN) with x's weights: outputs as the reference returns them, and the gradients
    in tensor_fields order."""
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[case.cell]
    layer = module(case.I, case.H).to(device=x.input.device, dtype=x.input.dtype)
    with torch.no_grad():
        for name, src in (("weight_ih_l0", x.w_ih), ("weight_hh_l0", x.w_hh), ("bias_ih_l0", x.b_ih),
                          ("bias_hh_l0", x.b_hh)):
            getattr(layer, name).copy_(src)
    layer.flatten_parameters()
    inp = x.input.detach().clone().requires_grad_()
    h0 = x.h0.detach().unsqueeze(0).requires_grad_()
    if case.kind.has_cell_state:
        c0 = x.c0.detach().unsqueeze(0).requires_grad_()
        out, (h_n, c_n) = layer(inp, (h0, c0))
        outs, leaves = (out, h_n[0], c_n[0]), [inp, h0, c0]
    else:
        out, h_n = layer(inp, h0)
        outs, leaves = (out, h_n[0]), [inp, h0]
    leaves += [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    grads = torch.autograd.grad(outs, leaves, upstream)
    return outs, [g.squeeze(0) if g.dim() == 3 and i in (1, 2) else g for i, g in enumerate(grads)]


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", [Case("lstm", B=8, T=32, I=64, H=256), Case("gru", B=8, T=32, I=64, H=256),
                                  Case("rnn_tanh", B=16, T=32, I=64, H=128)], ids=lambda c: c.id)
def test_cuda_matches_cudnn_error_bound(case, dtype, path):
    """|triton(dtype) − ref(fp64)| ≤ 3·|cuDNN(dtype) − ref(fp64)| + tiny, for outputs and every gradient."""
    x64 = make_inputs(case, device="cuda")
    x_lo = make_inputs(case, dtype=dtype, device="cuda")
    upstream = random_like(run_backend(case.kind, x64, "reference"))
    truth, g_truth = outputs_and_grads(case.kind, x64, "reference", upstream)
    got, g_got = outputs_and_grads(case.kind, x_lo, "triton", [u.to(dtype) for u in upstream])
    cudnn, g_cudnn = _cudnn_outputs_and_grads(case, x_lo, [u.to(dtype) for u in upstream])
    names = [n for n, _ in tensor_fields(x64)]
    for name, a, c, t in zip(["output", "h_n", "c_n"] + names, list(got) + list(g_got),
                             list(cudnn) + list(g_cudnn), list(truth) + list(g_truth)):
        assert a.dtype == dtype, name
        assert _max_error(a, t) <= 3 * _max_error(c, t) + 1e-5, name


@requires_cuda
@pytest.mark.parametrize("case", [Case("lstm", B=2, T=3, I=3, H=5, proj=3, lengths=(3, 1), reverse=True),
                                  Case("gru", B=3, T=4, I=3, H=37, lengths=(4, 2, 1)),
                                  Case("rnn_relu", B=2, T=3, I=3, H=5)], ids=lambda c: c.id)
def test_cuda_gradcheck_float64(case, path):
    _gradcheck(case, device="cuda")


def test_torch_compile_fullgraph_one_graph_for_every_T(path):
    """torch.compile(fullgraph=True) of the functional API on the triton backend: same results and gradients as
    eager, and one graph for two sequence lengths (either path's recurrence is one opaque custom-op node with a
    fake function: it never unrolls over T, and the persistent launch stays cooperative). In the interpreter:
    aot_eager; on a GPU: Inductor."""
    import torch._dynamo

    from rnnfused import functional as F
    backends.unavailable_reason("triton", DEVICE)  # load the backend first: its one-time registration is a guard
    torch._dynamo.reset()

    def loss(x, w_ih, w_hh, b_ih, b_hh):
        out, (h, c) = F.lstm(x, None, w_ih, w_hh, b_ih, b_hh, backend="triton")
        return out.square().sum() + h.sum() + c.sum()

    compiled = torch.compile(loss, fullgraph=True, dynamic=True, backend="inductor" if DEVICE == "cuda" else
                             "aot_eager")
    counters = torch._dynamo.utils.counters
    counters.clear()
    dtype, tol = (torch.float32, 1e-4) if DEVICE == "cuda" else (torch.float64, 1e-10)
    for T in (4, 7):  # distinct from every other size, or duck sizing would tie them in the first graph's guards
        x = make_inputs(Case("lstm", B=2, T=T, I=3, H=5), dtype=dtype, device=DEVICE)
        args = (x.input, x.w_ih, x.w_hh, x.b_ih, x.b_hh)
        got = compiled(*args)
        g_got = torch.autograd.grad(got, args)
        want = loss(*args)
        g_want = torch.autograd.grad(want, args)
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


@requires_cuda
def test_cuda_no_kernel_recompilation_across_T(path):
    from rnnfused._triton import persistent_kernels, step_kernels

    def compiled_variants():
        kernels = (step_kernels.forward_step_kernel, step_kernels.backward_step_kernel,
                   persistent_kernels.forward_persistent_kernel, persistent_kernels.backward_persistent_kernel)
        return sum(len(cache) for k in kernels for cache, *_ in k.device_caches.values())

    counts = []
    for T in (3, 16, 33):
        case = Case("gru", B=4, T=T, I=8, H=32)
        x = make_inputs(case, dtype=torch.float32, device="cuda")
        outs = run_backend(case.kind, x, "triton")
        torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], [torch.ones_like(o) for o in outs])
        counts.append(compiled_variants())
    assert counts[1] == counts[2] == counts[0], counts


# ------------------------------------------------------------------------ GPU readiness, GPU halves
# The CPU halves are in test_triton_readiness.py. These run with fixed configs (tests/conftest.py) except the tuner's.
def _fwd_bwd(case, x, upstream_seed=5):
    """Outputs and every gradient of the triton backend, detached."""
    outs = run_backend(case.kind, x, "triton")
    grads = torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], random_like(outs, seed=upstream_seed))
    return [o.detach() for o in outs] + list(grads)


def _same(got, want, tol):
    for i, (a, b) in enumerate(zip(got, want)):
        torch.testing.assert_close(a.to(b.device), b, atol=tol, rtol=tol, msg=lambda m, i=i: f"result {i}: {m}")


if RUNS_HERE:
    import triton.language as tl

    from rnnfused._triton import barrier

    @triton.jit
    def _never_complete(counter_ptr, stall_ptr, spin_limit, ok_ptr):
        """A barrier that waits for one program more than the grid has."""
        ok = barrier.grid_barrier(counter_ptr, tl.num_programs(0) + 1, stall_ptr, spin_limit, 3)
        tl.store(ok_ptr + tl.program_id(0), ok.to(tl.int32))


READY_CASES = [Case("lstm", B=3, T=6, I=8, H=32, lengths=(6, 2, 5)), Case("gru", B=2, T=5, I=8, H=48, reverse=True)]


@requires_cuda
@pytest.mark.parametrize("case", READY_CASES, ids=lambda c: c.id)
def test_cuda_runs_on_the_tensors_device_and_current_stream(case, path):
    """Two GPUs: tensors on cuda:1 while cuda:0 is current. One GPU: a side stream whose input is written after a
    ~50 ms sleep — a kernel launched on any other stream would read it before it is written."""
    expected = _fwd_bwd(case, make_inputs(case, device="cuda"))  # current device, default stream
    if torch.cuda.device_count() >= 2:
        with torch.cuda.device(0):
            got = _fwd_bwd(case, make_inputs(case, device="cuda:1"))
        assert got[0].device == torch.device("cuda:1")
        _same(got, expected, 1e-10)
        return
    side = torch.cuda.Stream()
    src = make_inputs(case, device="cuda", requires_grad=False)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        late = torch.zeros_like(src.input)
        torch.cuda._sleep(100_000_000)  # cycles: ~50 ms on an H100/H200
        late.copy_(src.input)
        x = make_inputs(case, device="cuda")._replace(input=late.requires_grad_())
        got = _fwd_bwd(case, x)
    torch.cuda.synchronize()
    _same(got, expected, 1e-10)


@requires_cuda
@pytest.mark.parametrize("case", READY_CASES, ids=lambda c: c.id)
def test_cuda_lengths_on_the_device_match_cpu_lengths(case, path):
    if case.lengths is None:
        case = Case(case.cell, B=case.B, T=case.T, I=case.I, H=case.H, reverse=case.reverse, lengths=(5, 3))
    x = make_inputs(case, device="cuda")
    _same(_fwd_bwd(case, x._replace(lengths=x.lengths.cuda())), _fwd_bwd(case, x), 0)


@requires_cuda
def test_cuda_graph_capture_forward_and_backward_with_device_lengths(path):
    """torch.cuda.graph of the triton backend's forward + backward with lengths already on the GPU (no host
    copy, no value check, no tuning inside the capture); replays with new inputs equal eager runs."""
    case = Case("lstm", B=3, T=6, I=8, H=32, lengths=(6, 2, 5), reverse=True)
    static = make_inputs(case, dtype=torch.float32, device="cuda")
    static = static._replace(lengths=static.lengths.cuda())
    leaves = [t for _, t in tensor_fields(static)]
    upstream = [u.float() for u in random_like(run_backend(case.kind, static, "reference"))]

    def step():
        return torch.autograd.grad(run_backend(case.kind, static, "triton"), leaves, upstream)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: compiles, allocates the stall record
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_grads = step()
    for seed in (3, 4):
        fresh = make_inputs(case, dtype=torch.float32, device="cuda", seed=seed)
        with torch.no_grad():
            for (_, dst), (_, src) in zip(tensor_fields(static), tensor_fields(fresh)):
                dst.copy_(src)
        graph.replay()
        want = torch.autograd.grad(run_backend(case.kind, fresh._replace(lengths=static.lengths), "triton"),
                                   [t for _, t in tensor_fields(fresh)], upstream)
        torch.cuda.synchronize()
        _same(static_grads, want, 1e-5)  # same kernels; cuBLAS may pick another algorithm inside a capture


@requires_cuda
def test_cuda_persistent_kernels_are_compiled_cooperative(monkeypatch):
    from rnnfused._triton import persistent_kernels

    monkeypatch.setenv("RNNFUSED_TRITON_PATH", "persistent")
    case = Case("gru", B=4, T=5, I=8, H=64)
    _fwd_bwd(case, make_inputs(case, dtype=torch.float32, device="cuda"))
    for kernel in (persistent_kernels.forward_persistent_kernel, persistent_kernels.backward_persistent_kernel):
        compiled = [k for cache, *_ in kernel.device_caches.values() for k in cache.values()]
        assert compiled and all(k.metadata.launch_cooperative_grid for k in compiled), kernel


@requires_cuda
def test_cuda_a_stalled_barrier_ends_and_is_reported_without_poisoning_the_context():
    """A cooperative grid whose barrier can never complete (target one more than the programs): every program gives
    up after the spin limit, the launch ends, raise_if_stalled reports it, and the GPU keeps working."""
    dev = torch.device("cuda", torch.cuda.current_device())
    counter = torch.zeros(2, dtype=torch.int32, device=dev)
    ok = torch.full((4,), -1, dtype=torch.int32, device=dev)
    _never_complete[(4,)](counter, barrier.stall_record(dev), 1000, ok, launch_cooperative_grid=True)
    torch.cuda.synchronize()
    assert ok.tolist() == [0, 0, 0, 0]
    with pytest.raises(RuntimeError, match="step 3: [1-4] of 5 arrivals"):
        barrier.raise_if_stalled(dev)
    case = Case("gru", B=2, T=3, I=3, H=5)
    _fwd_bwd(case, make_inputs(case, dtype=torch.float32, device="cuda"))  # the context is healthy
    torch.cuda.synchronize()


@requires_cuda
def test_cuda_autotune_once_then_from_disk(monkeypatch, tmp_path):
    """RNNFUSED_TRITON_AUTOTUNE=1: the first call of a family times the candidates (two here, to stay short) and
    stores the winner on disk; with the memory cache emptied, the next call reads it and times nothing."""
    from rnnfused._triton import config_cache

    monkeypatch.setenv(configs.AUTOTUNE_ENV, "1")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    real = configs.candidate_configs
    monkeypatch.setattr(configs, "candidate_configs", lambda *a: real(*a)[:2])
    case = Case("lstm", B=4, T=5, I=8, H=64)
    want = _fwd_bwd(case, make_inputs(case, dtype=torch.float32, device="cuda"))
    path_ = config_cache.cache_file(torch.cuda.get_device_name())
    assert len(json.load(open(path_))["configs"]) == 2  # forward and backward of this family
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    monkeypatch.setattr(configs, "_tune", lambda *a: pytest.fail("tuned although the disk cache has the family"))
    _same(_fwd_bwd(case, make_inputs(case, dtype=torch.float32, device="cuda")), want, 1e-5)
