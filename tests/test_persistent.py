"""The persistent CUDA kernels (csrc/cuda/kernels/persistent_*, csrc/cuda/persistent/) on the GPU.

They are reached through the debug ops torch.ops.rnnfused._persistent_{forward,backward,plan} (the cuda backend's
dispatch may pick them too, see csrc/cuda/persistent/persistent.h). Everything here skips without a GPU.

    float64 (FMA mode)     outputs and all gradients vs the reference at 1e-10; gradcheck
    float32 (FMA mode)     tight bounds vs the float64 reference
    bf16 / fp16 / TF32     error bounded by a small multiple of cuDNN's own error in that dtype (flash-attention's rule)
    paths interchange      persistent forward + step-wise backward and vice versa give the same gradients
    resets                 in-sequence resets (Case.resets) in all of the above, and through the cuda backend's ops
    determinism            repeated runs are bitwise identical
    variants               every synchronisation variant (RNNFUSED_PERSISTENT_TUNING) gives the baseline's results
    watchdog               a withheld flag ends the launch cleanly with a stall record; the context stays usable
    dispatch               the crossover table bounds the automatic choice, and cuda_path says why
    compute-sanitizer      memcheck and racecheck clean on a small forward+backward (when the tool is installed)

On the device run these through tests/gpu/run_isolated.py (.ci/gpu_check.sh does): one hang cannot stop the run.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import rnnfused
from helpers import Case, make_inputs, random_like, requires_cuda, run_backend, tensor_fields
from test_backend_parity import ALL_CASES

pytestmark = [requires_cuda, pytest.mark.gpu]


def _ops_available():
    if not torch.cuda.is_available():
        return False
    try:
        import rnnfused  # noqa: F401  (loads the extension)

        torch.ops.rnnfused._persistent_forward.default
        return True
    except (AttributeError, RuntimeError, ImportError):
        return False


if torch.cuda.is_available() and not _ops_available():
    pytestmark.append(pytest.mark.skip(reason="rnnfused._C was built without the persistent CUDA kernels"))


@pytest.fixture(autouse=True)
def _no_abandoned_launch():
    """A launch the watchdog abandoned fails the test that made it (not the next one), with the record."""
    yield
    torch.cuda.synchronize()
    record = rnnfused.persistent_stall()
    assert record is None, f"the persistent-kernel watchdog abandoned a launch: {record['message']}"


class _PersistentLayer(torch.autograd.Function):
    """Persistent forward op + persistent (or step-wise) backward op as one differentiable layer."""

    @staticmethod
    def forward(ctx, cell, reverse, lengths, resets, backward_with, input, h0, c0, w_ih, w_hh, b_ih, b_hh):
        out, h_n, c_n, saved, cells = torch.ops.rnnfused._persistent_forward(cell, input, h0, c0, w_ih, w_hh, b_ih,
                                                                             b_hh, lengths, reverse, resets=resets)
        ctx.save_for_backward(input, h0, c0, w_ih, w_hh, out, saved, cells)
        ctx.cell, ctx.reverse, ctx.lengths, ctx.backward_with = cell, reverse, lengths, backward_with
        ctx.resets = resets
        ctx.has_bias = b_ih is not None
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn):
        input, h0, c0, w_ih, w_hh, out, saved, cells = ctx.saved_tensors
        lstm = ctx.cell == "lstm"
        g_cn = g_cn if lstm else None
        grads = _backward_op(ctx.backward_with, ctx.cell, g_out, g_hn, g_cn, input, h0, c0, w_ih, w_hh, ctx.lengths,
                             ctx.reverse, out, saved, cells, ctx.resets)
        gi, gh0, gc0, gwih, gwhh, gbih, gbhh = grads
        return (None, None, None, None, None, gi, gh0, gc0 if lstm else None, gwih, gwhh,
                gbih if ctx.has_bias else None, gbhh if ctx.has_bias else None)


def _backward_op(which, cell, g_out, g_hn, g_cn, input, h0, c0, w_ih, w_hh, lengths, reverse, out, saved, cells,
                 resets):
    if which == "persistent":
        return torch.ops.rnnfused._persistent_backward(cell, g_out, g_hn, g_cn, input, h0, c0, w_ih, w_hh, lengths,
                                                       reverse, out, saved, cells, resets=resets)
    # The cuda backend's step-wise op with the persistent forward's saved tensors (formats are shared).
    op = getattr(torch.ops.rnnfused, f"{cell}_backward")
    if cell == "lstm":
        g = op(g_out, g_hn, g_cn, input, h0, c0, w_ih, w_hh, None, lengths, reverse, out, saved, cells, resets=resets)
        return g[:7]
    extra = (saved,) if cell == "gru" else ()
    gi, gh0, gwih, gwhh, gbih, gbhh = op(g_out, g_hn, input, h0, w_ih, w_hh, lengths, reverse, out, *extra,
                                         resets=resets)
    return gi, gh0, None, gwih, gwhh, gbih, gbhh


def persistent(case, x, backward_with="persistent"):
    """(output, h_n[, c_n]) of the persistent path, differentiable."""
    lstm = case.kind.has_cell_state
    out, h_n, c_n = _PersistentLayer.apply(case.cell, x.reverse, x.lengths, x.resets, backward_with, x.input, x.h0,
                                           x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh)
    return (out, h_n, c_n) if lstm else (out, h_n)


def stepwise_cuda_available():
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("rnnfused::lstm_backward", "CUDA")
    except RuntimeError:
        return False


def grads_of(fn, x, upstream):
    outs = fn()
    leaves = [t for _, t in tensor_fields(x)]
    return outs, torch.autograd.grad(outs, leaves, upstream, allow_unused=True)


def assert_all_close(actual, expected, atol, rtol, names):
    for n, a, e in zip(names, actual, expected):
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, msg=lambda m, n=n: f"{n}: {m}")


CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
# The backend-parity cases (no proj_size: not supported here), plus shapes that stress the persistent geometry, and
# in-sequence resets (never with lengths) in both directions, several batch passes, many CTAs, a reset at every step.
CASES = [c for c in ALL_CASES if not c.proj] + [c for cell in CELLS for c in (
    Case(cell, B=9, T=4, I=5, H=100),  # 100 CTAs of one unit each (many producers per warp)
    Case(cell, B=40, T=3, I=3, H=24, lengths=tuple(range(1, 4)) * 13 + (3,)),  # several batch passes
    Case(cell, B=4, T=7, I=5, H=13, resets=0.3),
    Case(cell, B=3, T=6, I=4, H=37, resets=0.3, reverse=True),
    Case(cell, B=40, T=5, I=3, H=24, resets=0.25, reverse=cell == "gru"),  # several batch passes
)] + [Case("lstm", B=9, T=5, I=5, H=100, resets=0.3, reverse=True), Case("gru", B=2, T=4, I=3, H=8, resets=1.0)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float64_matches_reference(case):
    x = make_inputs(case, device="cuda")
    ref = run_backend(case.kind, x, "reference")
    upstream = random_like(ref)
    names = [n for n, _ in tensor_fields(x)]
    ref_outs, ref_grads = grads_of(lambda: run_backend(case.kind, x, "reference"), x, upstream)
    outs, grads = grads_of(lambda: persistent(case, x), x, upstream)
    assert_all_close(outs, ref_outs, 1e-10, 1e-10, ["output", "h_n", "c_n"])
    assert_all_close(grads, ref_grads, 1e-10, 1e-10, names)


@pytest.mark.parametrize("case", [c for c in CASES if c.H <= 37 and c.B <= 4], ids=lambda c: c.id)
def test_gradcheck_float64(case):
    x = make_inputs(case, device="cuda")
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return persistent(case, x._replace(**dict(zip(names, tensors))))

    assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("units", [3, 5], ids=lambda u: f"units{u}")
@pytest.mark.parametrize("cell", CELLS)
def test_forced_geometries_float64(cell, units, monkeypatch):
    """The tuning overrides change the grid (partial last CTA, several m-tiles) but never the result."""
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", f"units={units},nchunk=8")
    case = Case(cell, B=11, T=4, I=6, H=37, lengths=(4, 1, 3, 2, 4, 4, 1, 2, 3, 4, 4))
    x = make_inputs(case, device="cuda")
    upstream = random_like(run_backend(case.kind, x, "reference"))
    ref_outs, ref_grads = grads_of(lambda: run_backend(case.kind, x, "reference"), x, upstream)
    outs, grads = grads_of(lambda: persistent(case, x), x, upstream)
    assert_all_close(outs, ref_outs, 1e-10, 1e-10, ["output", "h_n", "c_n"])
    assert_all_close(grads, ref_grads, 1e-10, 1e-10, [n for n, _ in tensor_fields(x)])


def _max_err(a, b):
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize("cell", CELLS)
def test_float32_fma_mode_tight(cell, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    case = Case(cell, B=5, T=9, I=8, H=64, lengths=(9, 3, 7, 9, 1))
    x64 = make_inputs(case, device="cuda")
    x32 = make_inputs(case, device="cuda", dtype=torch.float32)
    upstream = random_like(run_backend(case.kind, x64, "reference"))
    ref_outs, ref_grads = grads_of(lambda: run_backend(case.kind, x64, "reference"), x64, upstream)
    outs, grads = grads_of(lambda: persistent(case, x32), x32, [u.float() for u in upstream])
    for got, ref in zip(list(outs) + list(grads), list(ref_outs) + list(ref_grads)):
        assert _max_err(got, ref) <= 2e-5 * (1 + float(ref.abs().max()))


# ----------------------------------------------------------------------------------------- vs cuDNN, low precision
def _cudnn(case, x):
    """cuDNN (nn.LSTM / nn.GRU / nn.RNN) with the same weights: (output, h_n[, c_n]) differentiable in x."""
    kind = case.kind
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(case.cell, torch.nn.RNN)
    kw = {} if cls is not torch.nn.RNN else {"nonlinearity": kind.nonlinearity}
    mod = cls(case.I, case.H, bias=case.bias, **kw).to(device="cuda", dtype=x.input.dtype)
    params = {"weight_ih_l0": x.w_ih, "weight_hh_l0": x.w_hh}
    if case.bias:
        params.update(bias_ih_l0=x.b_ih, bias_hh_l0=x.b_hh)
    hx = (x.h0[None], x.c0[None]) if kind.has_cell_state else x.h0[None]
    inp = x.input
    if x.lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(inp, x.lengths, enforce_sorted=False)
    out, state = torch.func.functional_call(mod, params, (inp, hx))
    if x.lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=case.T)
    if kind.has_cell_state:
        return out, state[0][0], state[1][0]
    return out, state[0]


LOW_PRECISION = [
    Case("lstm", B=16, T=20, I=32, H=256),
    Case("lstm", B=7, T=12, I=16, H=200, lengths=(12, 3, 7, 1, 12, 5, 9)),
    Case("gru", B=16, T=20, I=32, H=256),
    Case("gru", B=1, T=9, I=8, H=96),
    Case("rnn_tanh", B=8, T=16, I=16, H=128),
    Case("lstm", B=64, T=8, I=64, H=512),   # two batch passes
    Case("lstm", B=16, T=20, I=32, H=256, resets=0.1, reverse=True),
    Case("gru", B=40, T=12, I=16, H=192, resets=0.15),  # two batch passes
]


def _check_low_precision(case, dtype):
    """|persistent(dtype) - ref(float64)| <= 3 max(|cuDNN(dtype) - ref64|, |reference(dtype) - ref64|) + tiny, for
    outputs and gradients (random upstream): the error of PyTorch's own implementations in that precision. With
    resets (which cuDNN does not have) the reference's error alone."""
    x64 = make_inputs(case, device="cuda")
    x_lo = make_inputs(case, device="cuda", dtype=dtype)
    upstream = random_like(run_backend(case.kind, x64, "reference"))
    up_lo = [u.to(dtype) for u in upstream]
    truth, g_truth = grads_of(lambda: run_backend(case.kind, x64, "reference"), x64, upstream)
    ref, g_ref = grads_of(lambda: run_backend(case.kind, x_lo, "reference"), x_lo, up_lo)
    cud, g_cud = grads_of(lambda: _cudnn(case, x_lo), x_lo, up_lo) if not case.resets else (ref, g_ref)
    ours, g_ours = grads_of(lambda: persistent(case, x_lo), x_lo, up_lo)
    names = ["output", "h_n", "c_n"][:len(truth)] + [n for n, _ in tensor_fields(x_lo)]
    for name, o, c, r, t in zip(names, list(ours) + list(g_ours), list(cud) + list(g_cud), list(ref) + list(g_ref),
                                list(truth) + list(g_truth)):
        assert o.dtype == dtype, name
        bound = 3 * max(_max_err(c, t), _max_err(r, t)) + 1e-6
        assert _max_err(o, t) <= bound, f"{name}: persistent err {_max_err(o, t):.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "tf32"])
@pytest.mark.parametrize("case", LOW_PRECISION, ids=lambda c: c.id)
def test_error_bounded_by_pytorch_error(case, dtype, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)  # float32 runs the TF32 kernels
    _check_low_precision(case, dtype)


def _largest_fitting_hidden(cell, batch, dtype):
    for H in range(2048, 63, -64):
        if torch.ops.rnnfused._persistent_plan(cell, batch, H, dtype).startswith("persistent: yes"):
            return H
    pytest.skip(f"no hidden size fits for {cell} B={batch} {dtype}")


@pytest.mark.parametrize("cell,batch", [("lstm", 8), ("gru", 16), ("lstm", 33)])
def test_largest_fitting_hidden_size(cell, batch):
    dtype = torch.bfloat16
    _check_low_precision(Case(cell, B=batch, T=6, I=32, H=_largest_fitting_hidden(cell, batch, dtype)), dtype)


# ---------------------------------------------------------------------------------------- interchange, determinism
@pytest.mark.skipif(not stepwise_cuda_available(), reason="the cuda backend's step-wise ops are not in this build")
@pytest.mark.parametrize("case", [Case("lstm", B=3, T=5, lengths=(5, 2, 4), reverse=True), Case("gru", H=37),
                                  Case("rnn_tanh", B=4, T=6, lengths=(6, 1, 3, 6)),
                                  Case("lstm", B=4, T=6, resets=0.3), Case("gru", B=3, T=6, resets=0.3, reverse=True)],
                         ids=lambda c: c.id)
def test_forward_and_backward_paths_interchange(case):
    """Persistent forward + step-wise backward, and step-wise forward + persistent backward, match the reference."""
    x = make_inputs(case, device="cuda")
    upstream = random_like(run_backend(case.kind, x, "reference"))
    _, ref_grads = grads_of(lambda: run_backend(case.kind, x, "reference"), x, upstream)
    names = [n for n, _ in tensor_fields(x)]
    _, mixed = grads_of(lambda: persistent(case, x, backward_with="stepwise"), x, upstream)
    assert_all_close(mixed, ref_grads, 1e-10, 1e-10, names)
    # Step-wise forward (the cuda backend's op) differentiated by the persistent backward op.
    fwd = getattr(torch.ops.rnnfused, case.cell)
    with torch.no_grad():
        if case.cell == "lstm":
            out, h_n, c_n, saved, cells = fwd(x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, None, x.lengths,
                                              x.reverse, resets=x.resets)
        else:
            res = fwd(x.input, x.h0, x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.lengths, x.reverse, resets=x.resets)
            out, h_n = res[0], res[1]
            saved = res[2] if case.cell == "gru" else x.input.new_empty(case.T, case.B, 0)
            cells = x.input.new_empty(0)
    g_c = upstream[2].contiguous() if case.cell == "lstm" else None
    grads = torch.ops.rnnfused._persistent_backward(case.cell, upstream[0].contiguous(), upstream[1].contiguous(), g_c,
                                                    x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.lengths, x.reverse, out,
                                                    saved, cells, resets=x.resets)
    by_name = dict(zip(("input", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"), grads))
    assert_all_close([by_name[n] for n in names], ref_grads, 1e-10, 1e-10, names)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64], ids=["bf16", "fp64"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_repeated_runs_are_bitwise_identical(cell, dtype):
    case = Case(cell, B=12, T=16, I=24, H=160, lengths=(16, 3, 9, 16, 1, 12, 16, 7, 2, 16, 5, 11))
    x = make_inputs(case, device="cuda", dtype=dtype)
    upstream = [u.to(dtype) for u in random_like(run_backend(case.kind, make_inputs(case, device="cuda"), "reference"))]
    first = grads_of(lambda: persistent(case, x), x, upstream)
    for _ in range(3):
        again = grads_of(lambda: persistent(case, x), x, upstream)
        for a, b in zip(list(first[0]) + list(first[1]), list(again[0]) + list(again[1])):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------- tuning variants
VARIANTS = ("store_first", "padded", "poll_warp", "ll")
VARIANT_CASES = [Case("lstm", B=40, T=6, I=12, H=72, lengths=tuple(range(1, 7)) * 6 + (6, 6, 5, 4)),  # 2 passes
                 Case("gru", B=9, T=5, I=5, H=100, reverse=True),  # 20 CTAs of 5 units: an odd segment (ll pads it)
                 Case("rnn_relu", B=3, T=7, I=4, H=37),
                 Case("lstm", B=40, T=6, I=12, H=72, resets=0.25, reverse=True)]  # the reset path in every variant


def _run_all(case, x, upstream):
    outs, grads = grads_of(lambda: persistent(case, x), x, upstream)
    return list(outs) + list(grads)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "tf32"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", VARIANT_CASES, ids=lambda c: c.id)
def test_variants_give_the_baseline_results(case, variant, dtype, monkeypatch):
    """store_first, padded and poll_warp change only the synchronisation: bitwise the baseline's outputs and
    gradients. ll also keeps the arithmetic, except where it pads a 2-byte segment to whole words (the split-K
    boundaries move): there within the low-precision bound of the error test."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x = make_inputs(case, device="cuda", dtype=dtype)
    upstream = [u.to(dtype) for u in random_like(run_backend(case.kind, make_inputs(case, device="cuda"),
                                                             "reference"))]
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", "baseline")
    want = _run_all(case, x, upstream)
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", variant)
    plan = torch.ops.rnnfused._persistent_plan(case.cell, case.B, case.H, dtype)
    assert f"variant={variant}" in plan, plan
    got = _run_all(case, x, upstream)
    if variant != "ll" or dtype == torch.float32:
        for a, b in zip(got, want):
            assert torch.equal(a, b), f"{variant}: differs from the baseline"
    else:
        _check_low_precision(case, dtype)


def test_variants_need_a_tensor_core_mode(monkeypatch):
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", "ll")
    x = make_inputs(Case("gru"), device="cuda")  # float64: the FMA engine, baseline only
    with pytest.raises(RuntimeError, match="RNNFUSED_PERSISTENT_TUNING variant ll runs on the tensor-core"):
        persistent(Case("gru"), x)


def test_bad_tuning_value_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", "fastest")
    x = make_inputs(Case("gru"), device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="RNNFUSED_PERSISTENT_TUNING='fastest': unknown variant"):
        persistent(Case("gru"), x)


# ------------------------------------------------------------------------------------------------- watchdog
def _stalled_forward(cell, x, phase):
    return torch.ops.rnnfused._persistent_forward(cell, x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.b_ih, x.b_hh,
                                                  x.lengths, False, phase, 1 << 14)


@pytest.mark.parametrize("variant", ("baseline",) + VARIANTS)
def test_a_withheld_flag_ends_the_launch_with_a_record_and_a_usable_context(variant, monkeypatch):
    """CTA 0 stops publishing at phase 2 (debug_stall_phase): every waiter gives up after the spin limit, the kernel
    returns (no trap), the record names the phase and producer, the next launch raises it once, and the launch after
    that runs normally."""
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", variant)
    case = Case("lstm", B=8, T=6, I=8, H=96)
    x = make_inputs(case, device="cuda", dtype=torch.bfloat16, requires_grad=False)
    _stalled_forward("lstm", x, 2)
    torch.cuda.synchronize()  # returns: the context is not poisoned
    record = rnnfused.persistent_stall()
    assert record is not None, "the watchdog left no record"
    assert (record["phase"], record["producer"], record["target"], record["direction"], record["variant"]) == (
        2, 0, 3, "forward", variant), record
    assert record["seen"] < record["target"] and record["spins"] >= 1 << 14, record
    assert 0 <= record["cta"] < record["ctas"] and record["phases"] == case.T, record
    assert rnnfused.persistent_stall() is None  # reading cleared it
    # A stall not read explicitly is raised by the next launch (once), which does not run.
    _stalled_forward("lstm", x, 0)
    torch.cuda.synchronize()
    with pytest.raises(RuntimeError, match="earlier launch was abandoned by the watchdog: .* waited in phase 0"):
        _stalled_forward("lstm", x, -1)
    out = _stalled_forward("lstm", x, -1)[0]
    torch.cuda.synchronize()
    ref = run_backend(case.kind, make_inputs(case, device="cuda", requires_grad=False), "reference")[0]
    assert _max_err(out, ref) < 0.05
    assert torch.zeros(3, device="cuda").add(1).sum().item() == 3.0  # unrelated work still runs


# ------------------------------------------------------------------------------------------- graph capture
@pytest.mark.parametrize("variant", ("baseline", "ll"))
def test_cooperative_launch_inside_a_callers_cuda_graph(variant, monkeypatch):
    """The automatic path picks the persistent kernels for this bf16 layer; under torch.cuda.graph the cooperative
    launch (and its workspace memsets) become part of the caller's graph and replay with new inputs."""
    monkeypatch.setenv("RNNFUSED_PERSISTENT_TUNING", variant)
    case = Case("lstm", B=4, T=6, I=8, H=64)
    x = make_inputs(case, dtype=torch.bfloat16, device="cuda", requires_grad=False)
    assert rnnfused.cuda_path("lstm", case.T, case.B, case.I, case.H, dtype=torch.bfloat16) == "persistent"
    op = torch.ops.rnnfused.lstm
    args = lambda t: (t.input, t.h0, t.c0, t.w_ih, t.w_hh, t.b_ih, t.b_hh, None, None, False)  # noqa: E731
    static = x._replace(input=x.input.clone())
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture
        op(*args(static))
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = op(*args(static))
    for seed in (3, 4):
        fresh = make_inputs(case, dtype=torch.bfloat16, device="cuda", requires_grad=False, seed=seed)
        static.input.copy_(fresh.input)
        graph.replay()
        expected = op(*args(x._replace(input=fresh.input)))
        torch.cuda.synchronize()
        for a, b in zip(static_out[:3], expected[:3]):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------ dispatch rule
def test_cuda_path_reports_the_crossover_decision(tmp_path):
    path, why = rnnfused.cuda_path("lstm", 16, 16, 256, 256, dtype=torch.bfloat16, explain=True)
    assert path == "persistent" and "batch 16 <= 64" in why, why
    path, why = rnnfused.cuda_path("lstm", 16, 128, 256, 256, dtype=torch.bfloat16, explain=True)
    assert path == "stepwise" and "batch 128 > 64" in why and "crossover table" in why, why
    path, why = rnnfused.cuda_path("lstm", 16, 16, 256, 256, dtype=torch.float64, explain=True)
    assert path == "stepwise" and "cannot run" in why and "float64" in why, why
    table = tmp_path / "crossover.txt"
    table.write_text("# source: test table\nlstm bfloat16 * 8\n* * * 0\n")
    try:
        rnnfused.load_crossover_table(str(table))
        assert rnnfused.cuda_path("lstm", 16, 8, 256, 256, dtype=torch.bfloat16) == "persistent"
        path, why = rnnfused.cuda_path("lstm", 16, 16, 256, 256, dtype=torch.bfloat16, explain=True)
        assert path == "stepwise" and "test table" in why, why
        assert rnnfused.cuda_path("gru", 16, 8, 256, 256, dtype=torch.bfloat16) == "stepwise"
    finally:
        rnnfused.load_crossover_table()  # the shipped table
    assert rnnfused.persistent_crossover().startswith("source: "), rnnfused.persistent_crossover()


@pytest.mark.parametrize("case", [Case("lstm", B=6, T=9, I=8, H=64, resets=0.3),
                                  Case("gru", B=6, T=9, I=8, H=64, resets=0.3, reverse=True)], ids=lambda c: c.id)
def test_cuda_backend_runs_resets_on_the_persistent_path(case, monkeypatch):
    """The fit rule no longer declines resets: with RNNFUSED_PATH=persistent the cuda backend's ops (forward and
    backward) run them on the persistent kernels, with the debug ops' results (the step-wise path would differ by its
    rounding of h between steps)."""
    monkeypatch.setenv("RNNFUSED_PATH", "persistent")
    x = make_inputs(case, device="cuda", dtype=torch.bfloat16)
    upstream = [u.to(torch.bfloat16) for u in random_like(run_backend(case.kind, make_inputs(case, device="cuda"),
                                                                      "reference"))]
    want = grads_of(lambda: persistent(case, x), x, upstream)
    got = grads_of(lambda: run_backend(case.kind, x, "cuda"), x, upstream)
    names = ["output", "h_n", "c_n"][:len(want[0])] + [n for n, _ in tensor_fields(x)]
    assert_all_close(list(got[0]) + list(got[1]), list(want[0]) + list(want[1]), 0, 0, names)


def test_build_records_its_gpu_targets_and_runs_here():
    arches = rnnfused.cuda_arches()
    assert arches and all(a.startswith(("sm_", "compute_")) for a in arches), arches
    major, minor = torch.cuda.get_device_capability()
    runnable = [a for a in arches if (a.startswith("sm_") and int(a[3:]) // 10 == major and int(a[3:]) % 10 <= minor)
                or (a.startswith("compute_") and int(a[8:]) <= 10 * major + minor)]
    assert runnable, f"sm_{major}{minor} cannot run any of {arches}"
    assert rnnfused._cuda.kernel_image_unavailable(torch.device("cuda", 0)) is None
    tool = shutil.which("cuobjdump") or "/usr/local/cuda/bin/cuobjdump"
    if os.path.exists(tool):  # the recorded list is what the extension holds
        listed = subprocess.run([tool, "--list-elf", "--list-ptx", rnnfused._extension.extension().__file__], capture_output=True,
                                text=True).stdout
        for a in arches:
            assert (f".{a}." in listed) or (a.replace("compute_", "sm_") in listed), (a, listed[-2000:])


# -------------------------------------------------------------------------------------------- plan op, errors
def test_plan_op_reports_fit_and_geometry():
    text = torch.ops.rnnfused._persistent_plan("lstm", 16, 256, torch.bfloat16)
    assert text.startswith("persistent: yes") and "forward: ctas=" in text and "backward: ctas=" in text
    text = torch.ops.rnnfused._persistent_plan("lstm", 16, 8192, torch.bfloat16)
    assert text.startswith("persistent: no")
    assert torch.ops.rnnfused._persistent_plan("gru", 8, 64, torch.float64).startswith("persistent: no (float64")


def test_bad_cell_name_is_an_error_naming_it():
    x = make_inputs(Case("gru"), device="cuda")
    with pytest.raises(RuntimeError, match="cell must be one of"):
        torch.ops.rnnfused._persistent_forward("lstmm", x.input, x.h0, None, x.w_ih, x.w_hh, x.b_ih, x.b_hh, None,
                                               False)


# ------------------------------------------------------------------------------------------- compute-sanitizer
SANITIZED = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from helpers import Case, make_inputs
import rnnfused
for cell in ("lstm", "gru"):
    x = make_inputs(Case(cell, B=5, T=4, I=6, H=40, lengths=(4, 2, 4, 1, 3)), device="cuda", dtype=torch.bfloat16,
                    requires_grad=False)
    out, h_n, c_n, saved, cells = torch.ops.rnnfused._persistent_forward(cell, x.input, x.h0, x.c0, x.w_ih, x.w_hh,
                                                                         x.b_ih, x.b_hh, x.lengths, False)
    g = torch.ops.rnnfused._persistent_backward(cell, torch.ones_like(out), torch.ones_like(h_n),
                                                torch.ones_like(x.c0) if cell == "lstm" else None, x.input, x.h0,
                                                x.c0, x.w_ih, x.w_hh, x.lengths, False, out, saved, cells)
torch.cuda.synchronize()
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
def test_compute_sanitizer_clean(tool, tmp_path):
    exe = shutil.which("compute-sanitizer") or (os.path.exists("/usr/local/cuda/bin/compute-sanitizer")
                                                and "/usr/local/cuda/bin/compute-sanitizer")
    if not exe:
        pytest.skip("compute-sanitizer is not installed")
    script = tmp_path / "sanitized.py"
    script.write_text(SANITIZED.format(tests=os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([exe, "--tool", tool, "--error-exitcode", "3", sys.executable, str(script)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout[-4000:] + res.stderr[-4000:]
