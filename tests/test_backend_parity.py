"""Every fused backend against the reference: outputs and all gradients (random upstream), gradcheck in float64,
and float32/bfloat16 error bounded by the reference's own error in that dtype."""
import pytest
import torch

from helpers import (Case, assert_close_all, backend_params, make_inputs, outputs_and_grads, random_like,
                     requires_cuda, run_backend, tensor_fields)


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


# ------------------------------------------------------------- lengths on the GPU, CUDA-graph capture
@requires_cuda
@pytest.mark.parametrize("cuda_path", ["stepwise", "persistent"])
@pytest.mark.parametrize("case", [Case("lstm", B=4, T=6, I=8, H=32, lengths=(6, 1, 4, 4), reverse=True),
                                  Case("gru", B=3, T=5, I=8, H=32, lengths=(5, 2, 4))], ids=lambda c: c.id)
def test_cuda_lengths_on_the_device_equal_cpu_lengths(case, cuda_path, monkeypatch):
    """Both CUDA paths take lengths already on the GPU (no host copy, no value check) with identical results."""
    monkeypatch.setenv("RNNFUSED_CUDA_PATH", cuda_path)
    x = make_inputs(case, dtype=torch.float32, device="cuda")
    upstream = random_like(run_backend(case.kind, x, "reference"))
    try:
        want, g_want = outputs_and_grads(case.kind, x, "cuda", upstream)
    except RuntimeError as exc:
        if "cannot run on the persistent path" in str(exc):
            pytest.skip(str(exc))
        raise
    got, g_got = outputs_and_grads(case.kind, x._replace(lengths=x.lengths.cuda()), "cuda", upstream)
    names = ["output", "h_n", "c_n"][:len(got)] + [n for n, _ in tensor_fields(x)]
    assert_close_all(list(got) + list(g_got), list(want) + list(g_want), names, atol=0, rtol=0)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_capture_of_fused_lstm_forward_backward_with_packed_input(backend):
    """torch.cuda.graph of a whole training step (forward, loss, backward) of a 2-layer bidirectional FusedLSTM on a
    PackedSequence. Capturable only if no op copies lengths from pageable host memory or reads their values inside
    the capture: the ops accept lengths on the GPU unchecked, and the module moves them there once per call (pinned,
    non_blocking). Replays with new data (same lengths) equal eager steps."""
    import copy

    from torch.nn.utils.rnn import pack_padded_sequence

    from rnnfused import FusedLSTM

    torch.manual_seed(0)
    model = FusedLSTM(8, 16, num_layers=2, bidirectional=True, backend=backend).cuda()
    lengths = torch.tensor([7, 3, 5, 1])
    packed = pack_padded_sequence(torch.randn(7, 4, 8, device="cuda"), lengths, enforce_sorted=False)

    def step(m, inp):
        out, (h, c) = m(inp)
        loss = out.data.square().sum() + h.sum() + c.sum()
        loss.backward()
        return loss.detach()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (compiles, allocates)
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            step(model, packed)
    torch.cuda.current_stream().wait_stream(side)
    model.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step(model, packed)
    for seed in (1, 2):
        g = torch.Generator(device="cuda").manual_seed(seed)
        fresh = pack_padded_sequence(torch.randn(7, 4, 8, device="cuda", generator=g), lengths, enforce_sorted=False)
        packed.data.copy_(fresh.data)
        graph.replay()
        eager = copy.deepcopy(model)
        eager.zero_grad(set_to_none=True)
        want_loss = step(eager, fresh)
        torch.cuda.synchronize()
        torch.testing.assert_close(static_loss, want_loss, atol=1e-5, rtol=1e-5)
        for (name, p), q in zip(model.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
