"""In-sequence state resets (``forward(..., resets=)``): the fused modules against segment-split runs of ``nn.*``,
gradcheck of the ops through resets (the C++ op, and the Triton ops on both of their paths: per-step and persistent
kernels, in the interpreter without a GPU), and the errors. A reset at (t, b) must act exactly as if row b's sequence
were cut before step t and every segment ran alone from the initial state, in every layer and both directions."""
from __future__ import annotations

from typing import List, Tuple

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnfused
from rnnfused import FusedGRU, FusedLSTM, FusedRNN
from rnnfused import functional as RF

from helpers import CELLS, backend_params, raised, random_like

T, B, I, H = 7, 3, 4, 5
# Row 0: segments [0, 3) [3, 7) (a reset at t = 0 changes nothing); row 1: no reset; row 2: [0, 1) [1, 2) [2, 6) [6, 7).
RESET_STEPS = {0: (0, 3), 1: (), 2: (1, 2, 6)}
MODULES = {"lstm": (nn.LSTM, FusedLSTM, {}), "gru": (nn.GRU, FusedGRU, {}),
           "rnn_tanh": (nn.RNN, FusedRNN, {"nonlinearity": "tanh"}),
           "rnn_relu": (nn.RNN, FusedRNN, {"nonlinearity": "relu"})}


def resets_tensor(steps=T, batch=B, where=RESET_STEPS) -> torch.Tensor:
    r = torch.zeros(steps, batch, dtype=torch.bool)  # [T, B]
    for b, ts in where.items():
        r[list(ts), b] = True
    return r


def segments(row_resets: torch.Tensor) -> List[Tuple[int, int]]:
    """[s, e) spans of one row: a new one starts at every reset (a reset at t = 0 starts nothing new)."""
    starts = [0] + [t for t in range(1, len(row_resets)) if row_resets[t]]
    return list(zip(starts, starts[1:] + [len(row_resets)]))


def split_run(ref: nn.RNNBase, x: torch.Tensor, hx, resets: torch.Tensor):
    """nn.* on every segment of every row alone (time-major x [T, B, I]): the truth for resets.
    h_n/c_n: forward directions end in the row's last segment, reverse directions in its first."""
    D = 2 if ref.bidirectional else 1
    has_c = isinstance(hx, tuple)
    outs, h_rows, c_rows = [], [], []
    for b in range(x.shape[1]):
        row_hx = tuple(s[:, b:b + 1] for s in hx) if has_c else hx[:, b:b + 1]
        runs = [ref(x[s:e, b:b + 1], row_hx) for s, e in segments(resets[:, b])]
        outs.append(torch.cat([o for o, _ in runs]))
        pick = lambda states: torch.stack([states[-1 if i % D == 0 else 0][i] for i in range(ref.num_layers * D)])  # noqa: E731
        h_rows.append(pick([st[0] if has_c else st for _, st in runs]))
        if has_c:
            c_rows.append(pick([st[1] for _, st in runs]))
    out = torch.cat(outs, dim=1)
    return out, torch.cat(h_rows, dim=1), (torch.cat(c_rows, dim=1) if has_c else None)


def make_pair(cell: str, backend: str, device: str = "cpu", **kwargs):
    """(nn.* on the CPU: the truth, the fused module on `device`) with the same weights."""
    torch_cls, fused_cls, extra = MODULES[cell]
    torch.manual_seed(0)
    ref = torch_cls(I, H, **extra, **kwargs).double()
    fused = fused_cls(I, H, **extra, **kwargs, backend=backend).double().to(device)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def loss_and_grads(outputs, leaves, seed=3):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs if o is not None)
    return torch.autograd.grad(loss, leaves)


CONFIGS = {"2layer-bidir": dict(num_layers=2, bidirectional=True), "proj-bidir": dict(bidirectional=True, proj_size=3)}


@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "triton"))
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", CELLS)
def test_module_matches_segment_split_nn(cell, config, backend, device):
    kwargs = CONFIGS[config]
    if "proj_size" in kwargs and cell != "lstm":
        pytest.skip("proj_size is an LSTM option")
    ref, fused = make_pair(cell, backend, device, **kwargs)
    D, L = 2 if fused.bidirectional else 1, fused.num_layers
    H_out = fused.proj_size or H
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(L * D, B, H_out, generator=g, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(L * D, B, H, generator=g, dtype=torch.float64, requires_grad=True)
    hx = (h0, c0) if cell == "lstm" else h0
    resets = resets_tensor()

    # On the module's device; .to() and .cpu() are differentiable, so the gradients reach the CPU leaves.
    on_device = lambda t: t.to(device)  # noqa: E731
    out, state = fused(on_device(x), tuple(map(on_device, hx)) if cell == "lstm" else on_device(hx),
                       resets=on_device(resets))
    got = [t.cpu() for t in ((out, *state) if cell == "lstm" else (out, state))]
    expected = split_run(ref, x, hx, resets)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)

    leaves = [x, *(hx if cell == "lstm" else (hx,))]
    fused_grads = loss_and_grads(got, leaves + list(fused.parameters()))
    ref_grads = loss_and_grads(expected, leaves + list(ref.parameters()))
    names = ["input", "h0", "c0"][:len(leaves)] + [n for n, _ in fused.named_parameters()]
    for n, a, e in zip(names, fused_grads, ref_grads):
        torch.testing.assert_close(a.cpu(), e, atol=1e-11, rtol=1e-11, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "triton"))
def test_batch_first_and_unbatched_resets(backend, device):
    ref, fused = make_pair("gru", backend, device, batch_first=True, num_layers=2)
    x = torch.randn(B, T, I, dtype=torch.float64)
    resets = resets_tensor()
    out, h_n = (t.cpu() for t in fused(x.to(device), resets=resets.t().contiguous().to(device)))  # [B, T]: batch_first
    want_out, want_h, _ = split_run(ref_time_major(ref), x.transpose(0, 1), torch.zeros(2, B, H, dtype=x.dtype),
                                    resets)
    torch.testing.assert_close(out, want_out.transpose(0, 1), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(h_n, want_h, atol=1e-12, rtol=1e-12)
    # Unbatched input [T, I] takes resets [T].
    out1, h1 = (t.cpu() for t in fused(x[2].to(device), resets=resets[:, 2].to(device)))
    torch.testing.assert_close(out1, want_out[:, 2], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(h1, want_h[:, 2], atol=1e-12, rtol=1e-12)


def ref_time_major(ref: nn.RNNBase) -> nn.RNNBase:
    """The same nn module, time-major (split_run slices time-major inputs)."""
    tm = type(ref)(ref.input_size, ref.hidden_size, num_layers=ref.num_layers, bidirectional=ref.bidirectional,
                   batch_first=False, **({"nonlinearity": ref.nonlinearity} if isinstance(ref, nn.RNN) else {}))
    tm.load_state_dict(ref.state_dict())
    return tm.to(next(ref.parameters()).dtype)


def op_with_resets(cell: str, reverse: bool, backend: str, device: str = "cpu", batch: int = 2, hidden: int = 3,
                   resets=None):
    """(fn, inputs): a backend's layer op through resets as a function of its float64 inputs on `device`, and those
    inputs by name (input, h0[, c0], w_ih, w_hh, b_ih, b_hh[, w_hr]; the same values for every backend)."""
    proj = cell == "lstm-proj"
    kind = rnnfused._cells.cell_kind("lstm") if proj else rnnfused._cells.CELL_KINDS[cell]
    g = torch.Generator().manual_seed(0)
    steps, H_out = 4, (2 if proj else hidden)
    rand = lambda *s: (torch.rand(*s, generator=g, dtype=torch.float64) - 0.5).to(device).requires_grad_()  # noqa: E731
    GH = kind.gates * hidden
    inputs = dict(input=rand(steps, batch, 3), h0=rand(batch, H_out))
    if kind.has_cell_state:
        inputs["c0"] = rand(batch, hidden)
    inputs.update(w_ih=rand(GH, 3), w_hh=rand(GH, H_out), b_ih=rand(GH), b_hh=rand(GH))
    if proj:
        inputs["w_hr"] = rand(H_out, hidden)
    if resets is None:
        # Forward, rows 0/1 start segments at t = 2 / t = 1, 3 (the last step); in reverse at t = 1 / t = 0, 2.
        resets = resets_tensor(steps, batch, {0: (2,), 1: (1, 3)})
    resets = resets.to(device)

    def fn(**t):
        w = [t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"]]
        if kind.name == "lstm":
            out, (h, c) = RF.lstm(t["input"], (t["h0"], t["c0"]), *w, w_hr=t.get("w_hr"), reverse=reverse,
                                  resets=resets, backend=backend)
            return out, h, c
        fn_ = RF.gru if kind.name == "gru" else lambda *a, **k: RF.rnn(*a, nonlinearity=kind.name[4:], **k)
        return fn_(t["input"], t["h0"], *w, reverse=reverse, resets=resets, backend=backend)

    return fn, inputs


def gradcheck_wrt(fn, inputs: dict, wrt, **kwargs) -> bool:
    """torch.autograd.gradcheck of fn(**inputs) with respect to the inputs named in `wrt` (the others fixed)."""
    names = [n for n in inputs if n in wrt]
    return torch.autograd.gradcheck(lambda *t: fn(**{**inputs, **dict(zip(names, t))}),
                                    tuple(inputs[n] for n in names), atol=1e-7, **kwargs)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS + ("lstm-proj",))
def test_gradcheck_cpu_op_with_resets(cell, reverse):
    """float64 gradcheck of the C++ op through resets (the reset steps send their state gradient to h0/c0)."""
    fn, inputs = op_with_resets(cell, reverse, "cpu")
    # the full Jacobian forward; reversed: fast_mode (vᵀJu, random u, v: any wrong entry fails it w.p. 1), for CI time
    assert gradcheck_wrt(fn, inputs, inputs, fast_mode=reverse)


TRITON = backend_params("triton")[0]
# The persistent path has no projection (dispatch.choose_path sends the projection to the per-step path).
TRITON_PATH_CELLS = [pytest.param(path, cell, marks=TRITON.marks, id=f"{path}-{cell}")
                     for path in ("stepwise", "persistent") for cell in CELLS + ("lstm-proj",)
                     if not (path == "persistent" and cell == "lstm-proj")]


def assert_triton_matches_cpu(cell: str, reverse: bool, **shape):
    """The Triton op's outputs and every gradient (random upstream) equal the C++ op's (the step-wise driver's).
    -> (fn, inputs) of the Triton op."""
    fn, inputs = op_with_resets(cell, reverse, "triton", TRITON.values[1], **shape)
    cpu_fn, cpu_inputs = op_with_resets(cell, reverse, "cpu", **shape)
    got, expected = fn(**inputs), cpu_fn(**cpu_inputs)
    upstream = random_like(expected, seed=2)
    got_grads = torch.autograd.grad(got, list(inputs.values()), [u.to(o) for u, o in zip(upstream, got)])
    expected_grads = torch.autograd.grad(expected, list(cpu_inputs.values()), upstream)
    for name, a, e in zip(["output", "h_n", "c_n"], got, expected):
        torch.testing.assert_close(a.detach().cpu(), e.detach(), atol=1e-12, rtol=1e-12,
                                   msg=lambda m, n=name: f"{n}: {m}")
    for name, a, e in zip(inputs, got_grads, expected_grads):
        torch.testing.assert_close(a.cpu(), e, atol=1e-12, rtol=1e-12, msg=lambda m, n=name: f"grad {n}: {m}")
    return fn, inputs


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("path,cell", TRITON_PATH_CELLS)
def test_triton_ops_with_resets_match_cpu_and_gradcheck(path, cell, reverse, monkeypatch):
    """The Triton ops through resets on the per-step kernels and on the persistent kernel (one program in the
    interpreter): outputs and gradients equal the C++ op's, and float64 gradcheck with respect to the inputs whose
    gradients the resets reroute or select (x, h0, c0: the state gradient at segment starts; W_hh: dW_hh from h0
    at those steps; W_hr)."""
    monkeypatch.setenv("RNNFUSED_PATH", path)
    fn, inputs = assert_triton_matches_cpu(cell, reverse)
    # fast_mode (vᵀJu for random u, v) fails on any wrong Jacobian entry w.p. 1, at a fraction of the interpreted
    # kernel launches of the full Jacobian; undefined upstream gradients are the autograd formula's business, shared
    # with every Triton case (test_triton_backend.py's gradchecks check them): not repeated here.
    assert gradcheck_wrt(fn, inputs, ("input", "h0", "c0", "w_hh", "w_hr"), fast_mode=True,
                         check_undefined_grad=False)


@pytest.mark.parametrize("path,cell,reverse", [pytest.param("persistent", "lstm", True, marks=TRITON.marks,
                                                            id="persistent-lstm-rev"),
                                               pytest.param("stepwise", "gru", False, marks=TRITON.marks,
                                                            id="stepwise-gru-fwd")])
def test_triton_resets_across_tiles(path, cell, reverse, monkeypatch):
    """B=17, H=37: two row tiles × two unit tiles (and two K chunks) in the interpreter's configs, so the reset rows,
    the h0/c0 reads and the gradient accumulators of one tile must not touch another's; random resets."""
    monkeypatch.setenv("RNNFUSED_PATH", path)
    resets = torch.rand(4, 17, generator=torch.Generator().manual_seed(5)) < 0.4  # [T, B]
    assert_triton_matches_cpu(cell, reverse, batch=17, hidden=37, resets=resets)


@pytest.mark.parametrize("cell", CELLS)
def test_inference_equals_training_forward_with_resets(cell):
    """The step-wise driver's inference scratch (two cell-state slots) with resets gives the training result."""
    _, fused = make_pair(cell, "cpu", num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    resets = resets_tensor()
    with torch.no_grad():
        inference = fused(x, resets=resets)
    training = fused(x.requires_grad_(), resets=resets)
    for a, e in zip(torch.utils._pytree.tree_leaves(inference), torch.utils._pytree.tree_leaves(training)):
        torch.testing.assert_close(a, e.detach(), atol=0, rtol=0)


def test_no_resets_is_the_plain_module():
    """resets=None and all-False resets give today's results (all-False through the reset machinery)."""
    _, fused = make_pair("lstm", "cpu", num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    plain = fused(x)
    torch.testing.assert_close(fused(x, resets=None)[0], plain[0], atol=0, rtol=0)
    torch.testing.assert_close(fused(x, resets=torch.zeros(T, B, dtype=torch.bool))[0], plain[0], atol=1e-13,
                               rtol=1e-13)


def test_torch_compile_fullgraph_with_resets():
    _, fused = make_pair("lstm", "cpu", num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    resets = resets_tensor()
    compiled = torch.compile(lambda x, r: fused(x, resets=r), fullgraph=True)
    out_c, (h_c, c_c) = compiled(x, resets)
    out_e, (h_e, c_e) = fused(x, resets=resets)
    for a, e in ((out_c, out_e), (h_c, h_e), (c_c, c_e)):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    out_c.sum().backward()
    grads = [p.grad.clone() for p in fused.parameters()]
    fused.zero_grad()
    out_e.sum().backward()
    for a, p in zip(grads, fused.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-12, rtol=1e-12)


# ------------------------------------------------------------------------------------------------------ errors
def test_module_resets_errors_name_the_argument():
    _, fused = make_pair("lstm", "cpu")
    x = torch.randn(T, B, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, [T, 5, 2])
    cases = {
        "PackedSequence": (lambda: fused(packed, resets=resets_tensor())),
        "bool tensor": (lambda: fused(x, resets=resets_tensor().int())),
        "shape [seq_len, batch]": (lambda: fused(x, resets=resets_tensor().t())),
        "like input": (lambda: fused(x, resets=resets_tensor().to("meta"))),
    }
    for expected, call in cases.items():
        exc = raised(call)
        assert isinstance(exc, ValueError) and "resets" in str(exc) and expected in str(exc), (expected, exc)


def test_op_rejects_resets_with_lengths_and_bad_shapes():
    op = torch.ops.rnnfused.gru
    x, h0 = torch.randn(T, B, I), torch.zeros(B, H)
    w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)
    lengths = torch.tensor([T, 3, 2])
    exc = raised(lambda: op(x, h0, w_ih, w_hh, None, None, lengths, False, resets=resets_tensor()))
    assert isinstance(exc, RuntimeError) and "resets cannot be combined with lengths" in str(exc)
    exc = raised(lambda: op(x, h0, w_ih, w_hh, None, None, None, False, resets=resets_tensor()[:4]))
    assert isinstance(exc, RuntimeError) and "resets must have shape [seq_len=7, batch=3]" in str(exc)
    exc = raised(lambda: op(x, h0, w_ih, w_hh, None, None, None, False, resets=resets_tensor().float()))
    assert isinstance(exc, RuntimeError) and "resets must have dtype bool" in str(exc)
    exc = raised(lambda: RF.gru(x, h0, w_ih, w_hh, lengths=[T, 3, 2], resets=resets_tensor(), backend="cpu"))
    assert isinstance(exc, ValueError) and "resets cannot be combined with lengths" in str(exc)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_forced_fused_cpu_path_runs_resets_like_stepwise(cell, reverse):
    """The fused CPU path runs resets (it is the automatic path for float64): forced fused = forced step-wise."""
    _, fused = make_pair(cell, "cpu", num_layers=2, bidirectional=True)
    rand = lambda *s: torch.randn(*s, dtype=torch.float64, requires_grad=True)  # noqa: E731
    x, h0, c0 = rand(T, B, I), rand(4, B, H), rand(4, B, H)
    hx = (h0, c0) if cell == "lstm" else h0
    inputs = [x, h0, c0] if cell == "lstm" else [x, h0]
    resets = resets_tensor()
    results = {}
    for path in ("fused", "stepwise"):
        with rnnfused._cpu._forced(path=path):
            out = fused(x, hx, resets=resets)
            leaves = torch.utils._pytree.tree_leaves(out)
            results[path] = leaves + list(loss_and_grads(leaves, inputs + list(fused.parameters())))
    for i, (a, e) in enumerate(zip(results["fused"], results["stepwise"])):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12, msg=lambda m, i=i: f"tensor {i}: {m}")
