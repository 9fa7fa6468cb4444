"""Zoneout (Krueger et al. 2017) on FusedLSTM/FusedGRU: the modules against a naive loop of nn.LSTMCell/nn.GRUCell
written here (masks reproduced from the same generator state), gradcheck of the ops with fixed masks, eval-mode
determinism, composition with PackedSequence, resets and bidirectional stacks, and the errors. The Triton ops run
zoneout in their kernels, on both paths (per-step and persistent; in the interpreter without a GPU): they are
compared with the C++ op and the reference, outputs and every gradient, and gradchecked."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnfused import FusedGRU, FusedLSTM, FusedRNN
from rnnfused import functional as RF
from rnnfused._inputs import forward_args
from rnnfused._op_family import op_for

from helpers import (Case, assert_close_all, backend_params, make_inputs, outputs_and_grads, raised, random_like,
                     run_backend, tensor_fields)

T, B, I, H = 6, 3, 4, 5
FUSED = {"lstm": FusedLSTM, "gru": FusedGRU}
CELL = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}


def naive_direction(cell, x, h0, c0, masks, lengths=None, resets=None, reverse=False):
    """One layer-direction by hand: x [T, B, I]; masks [S, T, B, H] keep-masks (h, c) or None; lengths [B] or None;
    resets [T, B] bool or None (the state entering a segment is (h0, c0), in either direction)."""
    steps = x.shape[0]
    h, c = h0, c0
    out = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        boundary = t + 1 if reverse else t
        if resets is not None and 0 < boundary < steps:
            fresh = resets[boundary].unsqueeze(1)
            h = torch.where(fresh, h0, h)
            c = torch.where(fresh, c0, c) if c is not None else None
        if c is not None:
            h_new, c_new = cell(x[t], (h, c))
        else:
            h_new, c_new = cell(x[t], h), None
        if masks is not None:
            h_new = masks[0, t] * h + (1 - masks[0, t]) * h_new
            if c is not None:
                c_new = masks[1, t] * c + (1 - masks[1, t]) * c_new
        if lengths is not None:
            active = (lengths > t).unsqueeze(1)
            out[t] = torch.where(active, h_new, torch.zeros_like(h_new))
            h = torch.where(active, h_new, h)
            c = torch.where(active, c_new, c) if c is not None else None
        else:
            out[t], h, c = h_new, h_new, c_new
    return torch.stack(out), h, c


def naive_stack(fused, x, hx, masks, lengths=None, resets=None):
    """The module's layers and directions with nn.*Cell on its weights; masks[l][d] per layer-direction."""
    lstm = isinstance(fused, FusedLSTM)
    D = 2 if fused.bidirectional else 1
    h0, c0 = hx if lstm else (hx, None)
    layer_in, h_n, c_n = x, [], []
    for layer in range(fused.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            cell = CELL["lstm" if lstm else "gru"](layer_in.shape[2], H).double()
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(fused, name + sfx))
            # the fused module's own parameters, so gradients land on them
            params = {name: getattr(fused, name + sfx) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            run = lambda *a, cell=cell, params=params: torch.func.functional_call(cell, params, a)  # noqa: E731
            idx = layer * D + d
            o, h, c = naive_direction(run, layer_in, h0[idx], c0[idx] if lstm else None, masks[layer][d], lengths,
                                      resets, reverse=bool(d))
            outs.append(o)
            h_n.append(h)
            c_n.append(c)
        layer_in = torch.cat(outs, dim=2)
    return layer_in, torch.stack(h_n), (torch.stack(c_n) if lstm else None)


def drawn_masks(fused, seed, steps=T, batch=B, device="cpu"):
    """The masks the module draws after torch.manual_seed(seed), in its order (layer, then direction), from the
    generator of `device` (the module's)."""
    torch.manual_seed(seed)
    p = [fused.zoneout_hidden] + ([fused.zoneout_cell] if isinstance(fused, FusedLSTM) else [])
    p = torch.tensor(p, dtype=torch.float64).view(-1, 1, 1, 1)
    D = 2 if fused.bidirectional else 1
    shape = (p.shape[0], steps, batch, H)
    p = p.to(device)
    return [[(torch.rand(shape, dtype=torch.float64, device=device) < p).double() for _ in range(D)]
            for _ in range(fused.num_layers)]


def make(cell, backend="cpu", device="cpu", **kwargs):
    torch.manual_seed(0)
    return FUSED[cell](I, H, backend=backend, **kwargs).double().to(device)


def inputs(cell, fused, seed=1):
    """x [T, B, I] and the initial state, leaves on the module's device (drawn on the CPU: the same on any device)."""
    g = torch.Generator().manual_seed(seed)
    L = fused.num_layers * (2 if fused.bidirectional else 1)
    device = next(fused.parameters()).device
    leaf = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()  # noqa: E731
    x, h0, c0 = leaf(T, B, I), leaf(L, B, H), leaf(L, B, H)
    return x, ((h0, c0) if cell == "lstm" else h0)


def flat(out, state):
    return [out, *state] if isinstance(state, tuple) else [out, state]


def grads_of(outputs, leaves):
    g = torch.Generator().manual_seed(5)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs if o is not None)
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "triton"))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_matches_naive_loop_with_drawn_masks(cell, backend, device):
    kwargs = dict(zoneout_hidden=0.3, zoneout_cell=0.6) if cell == "lstm" else dict(zoneout=0.4)
    fused = make(cell, backend, device, num_layers=2, bidirectional=True, **kwargs)
    x, hx = inputs(cell, fused)
    torch.manual_seed(11)
    got = flat(*fused(x, hx))
    masks = drawn_masks(fused, 11, device=device)
    expected = naive_stack(fused, x, hx, masks)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    leaves = [x, *(hx if cell == "lstm" else (hx,))] + list(fused.parameters())
    for a, e in zip(grads_of(got, leaves), grads_of(expected, leaves)):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "triton"))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_eval_is_deterministic_and_uses_p(cell, backend, device):
    fused = make(cell, backend, device, bidirectional=True, zoneout=0.25).eval()
    x, hx = inputs(cell, fused)
    first = flat(*fused(x, hx))
    second = flat(*fused(x, hx))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    p = torch.full((2 if cell == "lstm" else 1, T, B, H), 0.25, dtype=torch.float64, device=device)
    expected = naive_stack(fused, x, hx, [[p, p]])
    for a, e in zip(first, expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    with torch.no_grad():  # inference (train=False in the ops) gives the same
        for a, e in zip(flat(*fused(x, hx)), first):
            assert torch.equal(a, e)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zoneout_composes_with_packed_input(cell):
    fused = make(cell, num_layers=2, bidirectional=True, zoneout=0.5)
    x, hx = inputs(cell, fused)
    lengths = torch.tensor([T, 4, 2])
    torch.manual_seed(3)
    out, state = fused(pack_padded_sequence(x, lengths), hx)
    out, _ = pad_packed_sequence(out, total_length=T)
    expected = naive_stack(fused, x, hx, drawn_masks(fused, 3), lengths=lengths)
    for a, e in zip(flat(out, state), expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_zoneout_composes_with_resets(cell):
    fused = make(cell, bidirectional=True, zoneout=0.5)
    x, hx = inputs(cell, fused)
    resets = torch.zeros(T, B, dtype=torch.bool)
    resets[2, 0] = resets[4, 2] = resets[5, 2] = True
    torch.manual_seed(4)
    got = flat(*fused(x, hx, resets=resets))
    expected = naive_stack(fused, x, hx, drawn_masks(fused, 4), resets=resets)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    leaves = [x] + list(fused.parameters())
    for a, e in zip(grads_of(got, leaves), grads_of(expected, leaves)):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("lengths", [None, [5, 2]], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_cpu_op_with_fixed_masks(cell, reverse, lengths):
    """float64 gradcheck through the C++ op with zoneout: 0/1 masks (training) mixed with fractional ones (eval)."""
    g = torch.Generator().manual_seed(0)
    steps, batch, hidden, G = 5, 2, 3, (4 if cell == "lstm" else 3)
    rand = lambda *s: (torch.rand(*s, generator=g, dtype=torch.float64) - 0.5).requires_grad_()  # noqa: E731
    S = 2 if cell == "lstm" else 1
    masks = (torch.rand(S, steps, batch, hidden, generator=g, dtype=torch.float64) < 0.5).double()
    masks[:, 1] = 0.3
    args = [rand(steps, batch, 3), rand(batch, hidden)] + ([rand(batch, hidden)] if cell == "lstm" else [])
    args += [rand(G * hidden, 3), rand(G * hidden, hidden), rand(G * hidden), rand(G * hidden)]
    op = getattr(torch.ops.rnnfused, cell)
    lens = None if lengths is None else torch.tensor(lengths)

    def fn(*a):
        w_hr = [None] if cell == "lstm" else []
        outs = op(*a, *w_hr, lens, reverse, zoneout=masks)
        return outs[:3] if cell == "lstm" else outs[:2]

    assert torch.autograd.gradcheck(fn, tuple(args), atol=1e-7)


def test_zero_zoneout_is_the_plain_module():
    x = torch.randn(T, B, I, dtype=torch.float64)
    plain = make("lstm")(x)[0]
    assert torch.equal(make("lstm", zoneout=0.0)(x)[0], plain)
    assert torch.equal(make("lstm", zoneout=0.3).eval()(x)[0], make("lstm", zoneout=0.3).eval()(x)[0])


def test_torch_compile_fullgraph_with_zoneout():
    fused = make("gru", num_layers=2, zoneout=0.2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    compiled = torch.compile(fused, fullgraph=True)
    fused.eval()
    torch.testing.assert_close(compiled(x)[0], fused(x)[0], atol=1e-12, rtol=1e-12)
    fused.train()
    out = compiled(x)[0]  # masks drawn inside the graph
    out.sum().backward()
    assert all(p.grad is not None for p in fused.parameters())


def test_zoneout_errors_name_the_argument():
    cases = {
        "zoneout is supported by LSTM and GRU layers only": lambda: FusedRNN(I, H, zoneout=0.1),
        "zoneout cannot be combined with proj_size": lambda: FusedLSTM(I, H, proj_size=2, zoneout=0.1),
        "zoneout_cell needs a cell state": lambda: FusedGRU(I, H, zoneout_cell=0.1),
        "zoneout must be a probability in [0, 1)": lambda: FusedGRU(I, H, zoneout=1.0),
        "zoneout_hidden must be a probability": lambda: FusedLSTM(I, H, zoneout_hidden=-0.5),
    }
    for expected, call in cases.items():
        exc = raised(call)
        assert isinstance(exc, ValueError) and expected in str(exc), (expected, exc)
    assert "zoneout=0.25" in repr(FusedGRU(I, H, zoneout=0.25))
    assert "zoneout_hidden=0.1, zoneout_cell=0.2" in repr(FusedLSTM(I, H, zoneout_hidden=0.1, zoneout_cell=0.2))
    # op level
    x, h0, c0 = torch.randn(T, B, I), torch.zeros(B, H), torch.zeros(B, H)
    w = [torch.randn(4 * H, I), torch.randn(4 * H, H)]
    exc = raised(lambda: torch.ops.rnnfused.lstm(x, h0, c0, *w, None, None, None, None, False,
                                                 zoneout=torch.zeros(1, T, B, H)))
    assert isinstance(exc, RuntimeError) and "zoneout must have shape [2, seq_len=6, batch=3, hidden_size=5]" in str(exc)
    exc = raised(lambda: torch.ops.rnnfused.lstm(x, h0, c0, *w, None, None, None, None, False,
                                                 zoneout=torch.zeros(2, T, B, H, dtype=torch.float64)))
    assert isinstance(exc, RuntimeError) and "zoneout must have dtype Float" in str(exc)
    exc = raised(lambda: torch.ops.rnnfused.rnn_tanh(x, h0, torch.randn(H, I), torch.randn(H, H), None, None, None,
                                                     False, zoneout=torch.zeros(1, T, B, H)))
    assert isinstance(exc, RuntimeError) and "zoneout is supported by LSTM and GRU layers only" in str(exc)
    exc = raised(lambda: RF.gru(x, h0, torch.randn(3 * H, I), torch.randn(3 * H, H), backend="cpu"))
    assert exc is None


def test_zoneout_takes_the_stepwise_cpu_path():
    """The fused CPU kernels do not run zoneout: the rule sends such layers to the step-wise path, and forcing the
    fused path says so."""
    import rnnfused

    fused = make("gru", zoneout=0.3).eval()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with rnnfused._cpu._forced(path="stepwise"):
        stepwise = fused(x)[0]
    assert torch.equal(fused(x)[0], stepwise)
    with rnnfused._cpu._forced(path="fused"):
        exc = raised(lambda: fused(x))
    assert isinstance(exc, RuntimeError) and "does not run zoneout" in str(exc)


# ----------------------------------------------------------------------------------------- Triton kernels
TRITON = backend_params("triton")[0]
PATHS = ("stepwise", "persistent")


def triton_param(*values, id):
    return pytest.param(*values, marks=TRITON.marks, id=id)


def assert_triton_zoneout_matches(case: Case):
    """The Triton op (on the path RNNFUSED_PATH selects) with the case's fixed masks against the C++ op (the
    step-wise driver) and the reference: outputs and the gradients of every input (random upstream), float64."""
    kind = case.kind
    x_cpu = make_inputs(case)
    upstream = random_like(run_backend(kind, x_cpu, "reference"), seed=2)
    expected = {b: outputs_and_grads(kind, make_inputs(case), b, upstream) for b in ("cpu", "reference")}
    got_outs, got_grads = outputs_and_grads(kind, make_inputs(case, device=TRITON.values[1]), "triton",
                                            [u.to(TRITON.values[1]) for u in upstream])
    names = [n for n, _ in tensor_fields(x_cpu)]
    for backend, (outs, grads) in expected.items():
        assert_close_all([o.cpu() for o in got_outs], outs, [f"{backend}: output", "h_n", "c_n"], 1e-12, 1e-12)
        assert_close_all([g.cpu() for g in got_grads], grads, [f"{backend}: grad {n}" for n in names], 1e-12, 1e-12)


# Each path × cell × direction with lengths (padded steps: the mask must not touch them) and with resets (zoneout
# mixes with the state the segment starts from).
TRITON_ZONEOUT_CASES = [
    triton_param(path, Case(cell, B=3, T=5, I=3, H=4, reverse=reverse, zoneout=0.5, **feature),
                 id=f"{path}-{cell}-{'rev' if reverse else 'fwd'}-{name}")
    for path in PATHS for cell in ("lstm", "gru") for reverse in (False, True)
    for name, feature in (("lengths", dict(lengths=(5, 2, 4))), ("resets", dict(resets=0.4)))]


@pytest.mark.parametrize("path,case", TRITON_ZONEOUT_CASES)
def test_triton_ops_with_zoneout_match_cpu_and_reference(path, case, monkeypatch):
    monkeypatch.setenv("RNNFUSED_PATH", path)
    assert_triton_zoneout_matches(case)


@pytest.mark.parametrize("path,case", [
    triton_param("persistent", Case("lstm", B=17, T=3, I=3, H=37, reverse=True, resets=0.3, zoneout=0.5),
                 id="persistent-lstm-rev-resets"),
    triton_param("stepwise", Case("gru", B=17, T=3, I=3, H=37, lengths=(3, 1, 2) * 5 + (2, 3), zoneout=0.5),
                 id="stepwise-gru-fwd-lengths")])
def test_triton_zoneout_across_tiles(path, case, monkeypatch):
    """B=17, H=37: two row tiles × two unit tiles (and two K chunks) in the interpreter's configs, so every tile must
    read its own rows and units of the masks (partial tiles included)."""
    monkeypatch.setenv("RNNFUSED_PATH", path)
    assert_triton_zoneout_matches(case)


@pytest.mark.parametrize("path,cell", [triton_param(p, c, id=f"{p}-{c}") for p in PATHS for c in ("lstm", "gru")])
def test_gradcheck_triton_ops_with_zoneout(path, cell, monkeypatch):
    """float64 gradcheck through the Triton ops with fixed masks (0/1 and fractional), reverse with lengths, on each
    path. fast_mode: vᵀJu for random u, v (any wrong Jacobian entry fails w.p. 1) at a fraction of the interpreted
    launches of the full Jacobian."""
    monkeypatch.setenv("RNNFUSED_PATH", path)
    case = Case(cell, B=2, T=4, I=2, H=3, reverse=True, lengths=(4, 3), zoneout=0.5)
    x = make_inputs(case, device=TRITON.values[1])
    names = [n for n, _ in tensor_fields(x)]
    fn = lambda *t: run_backend(case.kind, x._replace(**dict(zip(names, t))), "triton")  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(t for _, t in tensor_fields(x)), atol=1e-7, fast_mode=True,
                                    check_undefined_grad=False)


@pytest.mark.parametrize("path", [triton_param("stepwise", id="stepwise")])
def test_opcheck_triton_op_with_zoneout(path, monkeypatch):
    """Schema, fake and autograd registration of the Triton op with masks: the opaque recurrence ops take them
    (under tracing either path is the same node, whose `path` argument is a string: one path is checked)."""
    monkeypatch.setenv("RNNFUSED_PATH", path)
    case = Case("lstm", B=2, T=3, I=2, H=3, lengths=(3, 2), zoneout=0.5)
    x = make_inputs(case, device=TRITON.values[1])
    torch.library.opcheck(op_for(case.kind, "_triton"), forward_args(case.kind, x))
