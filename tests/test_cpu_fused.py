"""The fused CPU path (csrc/cpu/fused): parity with the reference, gradients, bitwise determinism across thread
counts and team sizes, inference without backward buffers, and the path rule.

The path and the ISA are forced with the private test hook ``rnnfused._cpu._forced`` (no environment variable).
"""
import functools
import threading

import pytest
import torch

import rnnfused
from rnnfused import _cpu
from rnnfused._cells import CELL_KINDS
from rnnfused._extension import extension
from rnnfused._inputs import backward_arg_names, forward_args, forward_output_names, named_args
from rnnfused._op_family import op_for

from helpers import CELLS, Case, assert_close_all, make_inputs, outputs_and_grads, random_like, run_backend, \
    tensor_fields
from test_resets import resets_tensor

pytestmark = pytest.mark.skipif(not rnnfused.extension_loaded(), reason="needs rnnfused._C")

ISAS = ["portable", "avx2", "avx512"]


def _isa_param(isa):
    try:
        with _cpu._forced(isa=isa):
            pass
        marks = []
    except RuntimeError as exc:
        marks = [pytest.mark.skip(reason=str(exc))]
    return pytest.param(isa, id=isa, marks=marks)


ISA_PARAMS = [_isa_param(i) for i in ISAS]

# Odd shapes: H not a multiple of any vector width, B=1, H=1, T=1, batch tails of every tile height, projection,
# lengths (PackedSequence) and reverse, no bias. B=1 with H=45 (and proj=37) runs the one-row kernel that computes
# several panels at once (kernel.inc, one_row_panels) and the single-panel loop for the rest.
PARITY_CASES = [Case(c, B=1, T=4, I=3, H=1) for c in CELLS] + [Case(c, B=5, T=6, I=7, H=37) for c in CELLS] + [
    Case(c, B=1, T=5, I=6, H=45) for c in CELLS] + [
    Case("lstm", B=1, T=4, I=5, H=40, proj=37, reverse=True),
    Case("lstm", B=7, T=5, I=4, H=9, proj=5),
    Case("lstm", B=4, T=6, I=3, H=19, proj=11, lengths=(6, 2, 4, 1), reverse=True),
    Case("gru", B=4, T=6, I=5, H=21, lengths=(3, 6, 1, 5), reverse=True),
    Case("gru", B=13, T=3, I=2, H=17, lengths=(3, 1, 2, 3, 3, 1, 2, 3, 2, 1, 3, 3, 2)),
    Case("rnn_tanh", B=9, T=5, I=6, H=33, reverse=True, bias=False),
    Case("rnn_relu", B=3, T=7, I=4, H=11, lengths=(7, 4, 1)),
    Case("lstm", B=2, T=1, I=3, H=12, bias=False),
] + [
    # B >= 64: the sweep projects the input in blocks of 3 steps (kernel_api.h, projection_block_steps), the last
    # block partial, in either direction.
    Case("lstm", B=64, T=7, I=5, H=9, reverse=True),
    Case("gru", B=64, T=7, I=4, H=6, lengths=tuple([7] + [(5 * b) % 7 + 1 for b in range(1, 64)])),
    Case("lstm", B=65, T=8, I=3, H=5, proj=3),
]


def _run_fused(case, x, upstream=None):
    with _cpu._forced(path="fused"):
        if upstream is None:
            return run_backend(case.kind, x, "cpu"), None
        return outputs_and_grads(case.kind, x, "cpu", upstream)


def _reference(case, x):
    """A random upstream gradient for the case's outputs, and the reference's outputs and gradients for it."""
    upstream = random_like(run_backend(case.kind, x, "reference"))
    ref_outs, ref_grads = outputs_and_grads(case.kind, x, "reference", upstream)
    return upstream, ref_outs, ref_grads


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: c.id)
def test_fused_matches_reference_float64(case, isa):
    x = make_inputs(case)
    upstream, ref_outs, ref_grads = _reference(case, x)
    with _cpu._forced(isa=isa):
        outs, grads = _run_fused(case, x, upstream)
    names = ["output", "h_n", "c_n"][: len(outs)]
    assert_close_all(outs, ref_outs, names, atol=1e-12, rtol=1e-10)
    assert_close_all(grads, ref_grads, [f"grad {n}" for n, _ in tensor_fields(x)], atol=1e-11, rtol=1e-9)


# The step-wise path's pointwise loops (pointwise_cpu.h), which the cell ops share, have one copy per ISA and take the
# forced ISA too. H = 37 / 45 leave vector tails at every width; lengths give inactive rows.
STEPWISE_ISA_CASES = [Case(c, B=5, T=6, I=7, H=37) for c in CELLS] + [
    Case("lstm", B=4, T=6, I=3, H=19, proj=11, lengths=(6, 2, 4, 1), reverse=True),
    Case("gru", B=4, T=6, I=5, H=45, lengths=(3, 6, 1, 5), reverse=True)]


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("case", STEPWISE_ISA_CASES, ids=lambda c: c.id)
def test_stepwise_pointwise_loops_match_reference_for_every_isa(case, isa):
    x = make_inputs(case)
    upstream, ref_outs, ref_grads = _reference(case, x)
    with _cpu._forced(path="stepwise", isa=isa):
        outs, grads = outputs_and_grads(case.kind, x, "cpu", upstream)
        outs32, grads32 = outputs_and_grads(case.kind, make_inputs(case, dtype=torch.float32), "cpu",
                                            [u.float() for u in upstream])
    names = ["output", "h_n", "c_n"][: len(outs)]
    grad_names = [f"grad {n}" for n, _ in tensor_fields(x)]
    assert_close_all(outs, ref_outs, names, atol=1e-12, rtol=1e-10)
    assert_close_all(grads, ref_grads, grad_names, atol=1e-11, rtol=1e-9)
    assert_close_all([o.double() for o in outs32], ref_outs, names, atol=2e-5, rtol=1e-4)
    assert_close_all([g.double() for g in grads32], ref_grads, grad_names, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("case", [Case("lstm", B=6, T=9, I=16, H=40, proj=24, lengths=(9, 3, 9, 1, 5, 8)),
                                  Case("gru", B=3, T=9, I=8, H=45), Case("rnn_tanh", B=17, T=4, I=8, H=70)],
                         ids=lambda c: c.id)
def test_fused_float32_close_to_reference(case):
    x64 = make_inputs(case)
    x32 = make_inputs(case, dtype=torch.float32)
    upstream, ref_outs, ref_grads = _reference(case, x64)
    outs, grads = _run_fused(case, x32, [u.float() for u in upstream])
    assert_close_all([o.double() for o in outs], ref_outs, ["output", "h_n", "c_n"], atol=2e-5, rtol=1e-4)
    assert_close_all([g.double() for g in grads], ref_grads, [n for n, _ in tensor_fields(x64)], atol=1e-4,
                     rtol=1e-3)


@pytest.mark.parametrize("case", [Case(c, B=2, T=3, I=3, H=5) for c in CELLS] + [
    Case("lstm", B=3, T=4, I=2, H=4, proj=3, lengths=(4, 1, 3), reverse=True),
    Case("gru", B=3, T=4, I=2, H=3, lengths=(2, 4, 1), reverse=True, bias=False)], ids=lambda c: c.id)
def test_gradcheck_through_fused_path(case):
    x = make_inputs(case)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cpu")

    with _cpu._forced(path="fused"):
        assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-8, rtol=1e-6)


def test_fused_and_stepwise_backward_accept_each_others_forward():
    """Both paths save the same tensors: a fused forward's saved/cells feed the step-wise backward and back."""
    case = Case("lstm", B=3, T=5, I=4, H=10, proj=6, lengths=(5, 2, 4))
    x = make_inputs(case, requires_grad=False)
    kind = case.kind
    grads = {}
    for fwd_path in ("fused", "stepwise"):
        with _cpu._forced(path=fwd_path):
            outs = op_for(kind)(*forward_args(kind, x))
        g = random_like(outs[:3])
        for bwd_path in ("fused", "stepwise"):
            with _cpu._forced(path=bwd_path):
                grads[fwd_path, bwd_path] = torch.ops.rnnfused.lstm_backward(
                    g[0], g[1], g[2], x.input, x.h0, x.c0, x.w_ih, x.w_hh, x.w_hr, x.lengths, x.reverse, outs[0],
                    outs[3], outs[4])
    base = grads["stepwise", "stepwise"]
    for key, got in grads.items():
        for i, (a, b) in enumerate(zip(got, base)):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m, k=key, i=i: f"{k} grad {i}: {m}")


# ------------------------------------------------------------------------------------------------------ resets
# In-sequence resets (tests/test_resets.py holds the truth against segment-split nn.* runs). Rows of T=7 steps: a
# reset at t = 0 (no effect), several segments, one-step segments, a reset at the last step (in reverse: the segment
# that starts the sweep is one step long), a row with none. A batch of B rows takes the first B.
RESETS_T = 7
RESETS_AT = {0: (0, 3), 1: (1, 2, 6), 2: (), 3: (6,), 4: (1, 4, 5)}


def _with_resets(case, **kwargs):
    assert case.T == RESETS_T and case.lengths is None
    rows = {b: ts for b, ts in RESETS_AT.items() if b < case.B}
    return make_inputs(case, **kwargs)._replace(resets=resets_tensor(case.T, case.B, rows))


@functools.lru_cache(maxsize=None)
def _reference_with_resets(case):
    """(inputs, upstream, outputs, grads) of the reference: computed once per case for every ISA and team size."""
    x = _with_resets(case)
    upstream = random_like(run_backend(case.kind, x, "reference"))
    outs, grads = outputs_and_grads(case.kind, x, "reference", upstream)
    return x, upstream, [o.detach() for o in outs], grads


RESET_CASES = [Case(c, B=5, T=RESETS_T, I=3, H=13, reverse=r) for c in CELLS for r in (False, True)] + [
    Case("lstm", B=5, T=RESETS_T, I=3, H=11, proj=6, reverse=r) for r in (False, True)] + [
    Case("lstm", B=64, T=RESETS_T, I=3, H=5, reverse=True)]  # projection blocks of 3 steps


@pytest.mark.parametrize("workers", [1, 2, 9])  # 9: more workers than panels (some own none) for H=13 in float64
@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("case", RESET_CASES, ids=lambda c: c.id)
def test_fused_with_resets_matches_reference_float64(case, isa, workers):
    x, upstream, ref_outs, ref_grads = _reference_with_resets(case)
    with _cpu._forced(isa=isa, workers=workers):
        outs, grads = _run_fused(case, x, upstream)
    assert_close_all(outs, ref_outs, ["output", "h_n", "c_n"], atol=1e-12, rtol=1e-10)
    assert_close_all(grads, ref_grads, [f"grad {n}" for n, _ in tensor_fields(x)], atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize("case", [Case(c, B=3, T=RESETS_T, I=2, H=3, reverse=c == "gru") for c in CELLS] + [
    Case("lstm", B=3, T=RESETS_T, I=2, H=3, proj=2, reverse=True)], ids=lambda c: c.id)
def test_gradcheck_through_fused_path_with_resets(case):
    x = _with_resets(case)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cpu")

    with _cpu._forced(path="fused"):
        assert torch.autograd.gradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("case", [Case("lstm", B=5, T=RESETS_T, I=4, H=10, proj=6, reverse=True),
                                  Case("gru", B=5, T=RESETS_T, I=4, H=9)], ids=lambda c: c.id)
def test_fused_and_stepwise_backward_accept_each_others_forward_with_resets(case):
    """With resets too, either path's backward takes either path's forward (and both see the resets)."""
    kind = case.kind
    x = _with_resets(case, requires_grad=False)
    grads = {}
    for fwd_path in ("fused", "stepwise"):
        with _cpu._forced(path=fwd_path):
            outs = op_for(kind)(*forward_args(kind, x))
        g = random_like(outs[:kind.state_size + 1])
        values = {**x._asdict(), **named_args(forward_output_names(kind), outs),
                  **dict(zip(["grad_output", "grad_h_n", "grad_c_n"], g))}
        for bwd_path in ("fused", "stepwise"):
            with _cpu._forced(path=bwd_path):
                grads[fwd_path, bwd_path] = getattr(torch.ops.rnnfused, f"{kind.name}_backward")(
                    *[values[n] for n in backward_arg_names(kind)])
    base = grads["stepwise", "stepwise"]
    for key, got in grads.items():
        for i, (a, b) in enumerate(zip(got, base)):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m, k=key, i=i: f"{k} grad {i}: {m}")


def test_fused_with_resets_bitwise_identical_for_any_team_size():
    case = Case("lstm", B=5, T=RESETS_T, I=6, H=37, proj=21, reverse=True)

    def run():
        x = _with_resets(case, dtype=torch.float32)
        outs = run_backend(case.kind, x, "cpu")
        return outputs_and_grads(case.kind, x, "cpu", random_like(outs, seed=1))

    with _cpu._forced(path="fused", workers=1):
        base = run()
    for workers in (2, 5):
        with _cpu._forced(path="fused", workers=workers):
            got = run()
        for i, (a, b) in enumerate(zip(list(got[0]) + list(got[1]), list(base[0]) + list(base[1]))):
            assert torch.equal(a, b), f"{workers} workers: tensor {i} differs"


# ------------------------------------------------------------------------------------------------ determinism
def _outputs_and_grads_f32(case, seed=0):
    x = make_inputs(case, dtype=torch.float32, seed=seed)
    outs = run_backend(case.kind, x, "cpu")
    upstream = random_like(outs, seed=seed + 1)
    return outputs_and_grads(case.kind, x, "cpu", upstream)


BITWISE_CASES = [Case("lstm", B=9, T=6, I=20, H=70), Case("gru", B=5, T=5, I=12, H=52, lengths=(5, 2, 5, 4, 1)),
                 Case("rnn_tanh", B=3, T=7, I=9, H=100, reverse=True),
                 Case("lstm", B=4, T=5, I=8, H=48, proj=40, lengths=(5, 1, 3, 4), reverse=True)]


@pytest.mark.parametrize("case", BITWISE_CASES, ids=lambda c: c.id)
def test_fused_bitwise_identical_for_any_thread_count(case):
    saved_threads = torch.get_num_threads()
    results = {}
    try:
        with _cpu._forced(path="fused"):
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                results[threads] = _outputs_and_grads_f32(case)
    finally:
        torch.set_num_threads(saved_threads)
    base_outs, base_grads = results[1]
    for threads, (outs, grads) in results.items():
        for i, (a, b) in enumerate(zip(list(outs) + list(grads), list(base_outs) + list(base_grads))):
            assert torch.equal(a, b), f"{threads} threads: tensor {i} differs from the 1-thread result"


@pytest.mark.parametrize("workers", [2, 3, 5, 64])
def test_fused_bitwise_identical_for_any_team_size(workers):
    """More logical workers than threads (one thread runs several, the barrier counts weights), more workers than
    panels (some own none): same bits as one worker."""
    case = Case("lstm", B=5, T=6, I=10, H=37, proj=21, lengths=(6, 3, 6, 1, 4), reverse=True)
    with _cpu._forced(path="fused", workers=1):
        base = _outputs_and_grads_f32(case)
    with _cpu._forced(path="fused", workers=workers):
        got = _outputs_and_grads_f32(case)
    for i, (a, b) in enumerate(zip(list(got[0]) + list(got[1]), list(base[0]) + list(base[1]))):
        assert torch.equal(a, b), f"{workers} workers: tensor {i} differs"


# ------------------------------------------------------------------------------------------------ the big GEMMs
# (M, K, N): panel tails (N not a multiple of any panel width), row tails of every tile height and of the 48-row
# blocks, one row, one column, K = 0 (zeros), K longer than one L1 chunk, and K over several of aᵀ·b's 256-row
# chunks with full and partial panels (N = 70: two full AVX-512 float64 panels and a tail).
MATMUL_SHAPES = [(1, 1, 1), (7, 3, 5), (50, 33, 70), (97, 130, 65), (5, 0, 9), (130, 700, 17), (50, 520, 70)]


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("a_transposed", [False, True], ids=["a_b", "at_b"])
@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_matches_torch_float64(shape, a_transposed, isa):
    """The kernels' GEMM (kernel.inc, matmul) behind the input projection's backward (dX) and the weight gradients
    (Σ_t dgates_tᵀ x_t): a · b and aᵀ · b, with b a transposed weight view as the runner passes it."""
    M, K, N = shape
    gen = torch.Generator().manual_seed(M * 1000 + K * 10 + N)
    a = torch.randn((K, M) if a_transposed else (M, K), generator=gen, dtype=torch.float64)
    w = torch.randn(N, K, generator=gen, dtype=torch.float64)
    with _cpu._forced(isa=isa):
        got = extension()._cpu_matmul(a, a_transposed, w.t())
    want = (a.t() if a_transposed else a) @ w.t()
    assert got.shape == (M, N)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("a_transposed", [False, True], ids=["a_b", "at_b"])
@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_into_accumulates_float64(shape, a_transposed, isa):
    """The out= form the cell steps' backward uses (csrc/cell/cell_ops.h, step_gemm): out += A · B keeps what out
    held (every chunk and panel tail adds), out = A · B overwrites it."""
    M, K, N = shape
    gen = torch.Generator().manual_seed(M * 1000 + K * 10 + N + 1)
    a = torch.randn((K, M) if a_transposed else (M, K), generator=gen, dtype=torch.float64)
    b = torch.randn(K, N, generator=gen, dtype=torch.float64)
    start = torch.randn(M, N, generator=gen, dtype=torch.float64)
    product = (a.t() if a_transposed else a) @ b
    with _cpu._forced(isa=isa):
        summed, replaced = start.clone(), start.clone()
        extension()._cpu_matmul_into(a, a_transposed, b, summed, True)
        extension()._cpu_matmul_into(a, a_transposed, b, replaced, False)
    torch.testing.assert_close(summed, start + product, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(replaced, product, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a_transposed", [False, True], ids=["a_b", "at_b"])
def test_matmul_bitwise_identical_for_any_team_size(a_transposed):
    """Workers share (row block, panel) pairs after packing B together: any team gives the one-worker bits."""
    a = torch.randn((130, 97) if a_transposed else (97, 130))
    b = torch.randn(130, 70)
    with _cpu._forced(workers=1):
        base = extension()._cpu_matmul(a, a_transposed, b)
    for workers in (2, 3, 7, 64):
        with _cpu._forced(workers=workers):
            assert torch.equal(extension()._cpu_matmul(a, a_transposed, b), base), f"{workers} workers"


def test_matmul_rejects_bad_operands_clearly():
    a, b = torch.randn(4, 3), torch.randn(3, 5)
    with pytest.raises(RuntimeError, match="2-D"):
        extension()._cpu_matmul(a[0], False, b)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        extension()._cpu_matmul(a, False, b.double())
    with pytest.raises(RuntimeError, match="must have 3 rows"):
        extension()._cpu_matmul(a, False, b[:2])
    with pytest.raises(RuntimeError, match="must have 4 rows"):
        extension()._cpu_matmul(a, True, b)
    with pytest.raises(RuntimeError, match="contiguous"):
        extension()._cpu_matmul(a.t(), False, torch.randn(4, 2))
    with pytest.raises(RuntimeError, match=r"out must be a contiguous CPU \[4, 5\] tensor of Float"):
        extension()._cpu_matmul_into(a, False, b, torch.empty(5, 4), False)
    with pytest.raises(RuntimeError, match="out must be"):
        extension()._cpu_matmul_into(a, False, b, torch.empty(4, 5, dtype=torch.float64), True)


def test_fused_inside_a_parallel_region_runs_inline():
    """Called from inside an at::parallel_for region the op must not start a team (it would deadlock or
    oversubscribe): it runs on the calling thread and gives the same bits."""
    case = Case("gru", B=8, T=5, I=16, H=64)
    x = make_inputs(case, dtype=torch.float32, requires_grad=False)
    with _cpu._forced(path="fused"):
        expected = run_backend(case.kind, x, "cpu")
        got = []
        extension()._run_in_parallel_region(lambda: got.append(run_backend(case.kind, x, "cpu")))
    assert len(got) == 1
    for a, b in zip(got[0], expected):
        assert torch.equal(a, b)


def test_fused_concurrent_calls_from_python_threads():
    """Two threads calling the op at once (two OpenMP teams on two cores): no deadlock, same results."""
    case = Case("lstm", B=8, T=20, I=32, H=64)
    x = make_inputs(case, dtype=torch.float32, requires_grad=False)
    with _cpu._forced(path="fused"):
        expected = run_backend(case.kind, x, "cpu")
        results, errors = [], []

        def work():
            try:
                for _ in range(3):
                    results.append(run_backend(case.kind, x, "cpu"))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call did not finish"
    assert not errors, errors
    assert len(results) == 6
    for r in results:
        for a, b in zip(r, expected):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------- inference
def _allocated_bytes(fn):
    """Bytes of every CPU allocation made while fn runs, and fn's result. The profiler charges an allocation to
    the innermost op that made it (every tensor the kernels allocate comes from an ATen op: empty, addmm, ...) and
    a free to the op running at that time, so the positive self-memory of the events adds up the allocations."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    total = sum(max(0, e.self_cpu_memory_usage) for e in prof.events())
    return total, result


@pytest.mark.parametrize("path", ["fused", "stepwise"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_allocates_no_backward_buffers(cell, path):
    case = Case(cell, B=4, T=64, I=8, H=32)
    kind = case.kind
    x = make_inputs(case, dtype=torch.float32, requires_grad=False)
    with _cpu._forced(path=path):
        train_bytes, train_outs = _allocated_bytes(lambda: op_for(kind)(*forward_args(kind, x._replace(train=True))))
        infer_bytes, infer_outs = _allocated_bytes(lambda: op_for(kind)(*forward_args(kind, x._replace(train=False))))
    n_saved = 3 if kind.has_cell_state else 2
    saved = train_outs[n_saved:]
    assert all(t.numel() > 0 for t in saved)
    assert all(t.shape == (0,) for t in infer_outs[n_saved:]), [t.shape for t in infer_outs[n_saved:]]
    for a, b in zip(infer_outs[:n_saved], train_outs[:n_saved]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    backward_only = sum(t.numel() * t.element_size() for t in saved)
    # Inference keeps at most two [B, H] cell-state buffers and one step's activations instead of T steps of them.
    allowance = 2 * case.B * case.H * 4 + case.B * kind.saved_per_unit * case.H * 4
    assert infer_bytes <= train_bytes - backward_only + allowance, (infer_bytes, train_bytes, backward_only)


def test_module_under_no_grad_runs_the_op_with_train_false():
    lstm = rnnfused.FusedLSTM(8, 16, backend="cpu")
    x = torch.randn(30, 2, 8)
    with torch.no_grad():
        no_grad_bytes, out = _allocated_bytes(lambda: lstm(x))
    grad_bytes, out2 = _allocated_bytes(lambda: lstm(x))
    torch.testing.assert_close(out[0], out2[0].detach(), atol=0, rtol=0)
    saved_and_cells = 30 * 2 * 16 * 4 * (4 + 1)
    assert no_grad_bytes <= grad_bytes - saved_and_cells + 2 * 2 * 16 * 4


def test_backward_after_inference_forward_raises_clearly():
    case = Case("lstm", B=2, T=3, I=3, H=4)
    x = make_inputs(case)
    outs = op_for(case.kind)(*forward_args(case.kind, x._replace(train=False)))
    with pytest.raises(RuntimeError, match="train=False"):
        outs[0].sum().backward()


# ------------------------------------------------------------------------------------------------ the rule
def test_rule_picks_fused_for_float32_and_float64_and_stepwise_for_16_bit():
    for cell in CELLS:
        for dtype in (torch.float32, torch.float64):
            assert rnnfused.cpu_path(cell, 128, 8, 64, 64, dtype=dtype) == "fused"
        for dtype in (torch.bfloat16, torch.float16):
            assert rnnfused.cpu_path(cell, 128, 8, 64, 64, dtype=dtype) == "stepwise"
    assert rnnfused.cpu_path("lstm", 16, 1, 8, 32, proj_size=16, lengths=True, reverse=True) == "fused"
    # One step of one row: the step-wise path's GEMVs read the weights in place, the fused path would pack them.
    for cell in CELLS:
        assert rnnfused.cpu_path(cell, 1, 1, 64, 64) == "stepwise"
        assert rnnfused.cpu_path(cell, 2, 1, 64, 64) == "fused"
        assert rnnfused.cpu_path(cell, 1, 2, 64, 64) == "fused"
    assert rnnfused.cpu_isa() in ISAS


def test_forcing_paths_and_errors():
    with _cpu._forced(path="stepwise"):
        assert rnnfused.cpu_path("lstm", 8, 2, 4, 4) == "stepwise"
    with _cpu._forced(path="fused"):
        assert rnnfused.cpu_path("gru", 8, 2, 4, 4) == "fused"
    assert rnnfused.cpu_path("gru", 8, 2, 4, 4) == "fused"  # restored
    case = Case("gru", B=2, T=3, I=3, H=4)
    x = make_inputs(case, dtype=torch.bfloat16, requires_grad=False)
    with _cpu._forced(path="fused"), pytest.raises(RuntimeError, match="float32 and float64"):
        run_backend(case.kind, x, "cpu")
    with pytest.raises(RuntimeError, match="auto, stepwise or fused"):
        extension()._cpu_force_path("fast")
    with pytest.raises(RuntimeError, match="cell must be one of"):
        rnnfused.cpu_path("lstmx", 8, 2, 4, 4)
    assert extension()._cpu_force_path("auto") == "auto"


def test_bf16_runs_the_stepwise_path():
    case = Case("lstm", B=2, T=4, I=3, H=8)
    x = make_inputs(case, dtype=torch.bfloat16, requires_grad=False)
    with _cpu._forced(path="stepwise"):
        expected = run_backend(case.kind, x, "cpu")
    got = run_backend(case.kind, x, "cpu")
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------ float32 cell math
def _float32_sigmoid_through_an_lstm(a):
    """σ(a) for a float32 [B] as the CPU backend computes it: a one-step LSTM whose input gate sees a, and whose g
    and o gates see 20 (tanh(20) is 1.0 in float32), so c_n = σ(a)·1."""
    B = a.numel()
    x = torch.stack([a, torch.ones_like(a)], dim=1).view(1, B, 2)                  # [T=1, B, I=2]
    w_ih = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 20.0], [0.0, 20.0]])       # gates i, f, g, o of H=1
    zeros = torch.zeros(B, 1)
    _, (_, c_n) = rnnfused.functional.lstm(x, (zeros, zeros), w_ih, torch.zeros(4, 1), backend="cpu")
    return c_n.view(B)


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("path", ["fused", "stepwise"])
def test_float32_sigmoid_accurate_over_the_whole_range_of_exp(path, isa):
    # The vectorized float exp (csrc/common/host_math.h) clamps its argument to [-87.34, 88.38] and scales by 2^n for
    # n in [-126, 127]: the ends of that range give σ's smallest (subnormal) and largest values.
    ends = torch.tensor([87.3365447505531, 88.3762626647949, 88.7228, 103.9, 150.0])
    a = torch.cat([torch.linspace(-100.0, 100.0, 40001), ends, -ends, torch.nextafter(ends, ends + 1),
                   torch.nextafter(-ends, -ends - 1), torch.tensor([0.0, -0.0])])
    with _cpu._forced(path=path, isa=isa):
        got = _float32_sigmoid_through_an_lstm(a).double()
    # Below -88.38, exp(-a) saturates at exp(88.38) (not inf), so σ stops at σ(-88.38) ≈ 4.2e-39 instead of 0.
    floor = torch.sigmoid(torch.tensor(-88.3762626647949).double())  # the float32 clamp
    exact = torch.sigmoid(a.double()).clamp(min=floor)
    # Within 4 float32 ulps of that (normal results), within 4 of the smallest subnormal below 2^-126.
    ulp = torch.where(exact.abs() < 2.0 ** -126, torch.full_like(exact, 2.0 ** -149), exact.abs() * 2.0 ** -23)
    err = (got - exact).abs() / ulp
    worst = int(err.argmax())
    assert err.max() <= 4, f"σ({a[worst].item()}) = {got[worst].item()!r}, expected {exact[worst].item()!r}"


# -------------------------------------------------------------------------------------------- scratch reuse
def _results(case):
    x = make_inputs(case)
    upstream = random_like(run_backend(case.kind, x, "cpu"), seed=3)
    outs, grads = outputs_and_grads(case.kind, x, "cpu", upstream)
    return [t.detach() for t in outs] + [g for g in grads if g is not None]


def test_scratch_buffers_are_reused_and_never_leak_into_results():
    """The fused path keeps its internal [T, B, G*H] buffers between calls (csrc/cpu/scratch.h): results of calls
    of growing and shrinking sizes equal those computed with fresh buffers, and an earlier result is untouched by
    later calls."""
    extension()._cpu_release_scratch()
    small, large = Case("gru", B=3, T=4, I=5, H=6), Case("gru", B=7, T=9, I=5, H=20, lengths=(9, 3, 5, 1, 9, 2, 8))
    with _cpu._forced(path="fused"):
        first = _results(small)
        kept = [t.clone() for t in first]
        _results(large)  # grows the buffers and overwrites them
        again = _results(small)
        assert extension()._cpu_release_scratch() > 0
        fresh = _results(small)
    for a, b, c, d in zip(first, kept, again, fresh):
        assert torch.equal(a, b) and torch.equal(c, d) and torch.equal(a, d)
