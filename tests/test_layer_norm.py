"""LayerNorm LSTM/GRU (rnnfused.layer_norm): the modules and cells against a naive per-row, per-step loop written here
from the equations (outputs, final states and every parameter's gradient, float64), with layers, both directions,
batch_first, packed input, resets and eval-mode zoneout; float64 gradcheck of the C++ recurrence op through
lengths, reverse, resets and zoneout masks; the op against the reference equations; inference; parameters and
state_dict; torch.compile; torch.load; errors."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

import rnnfused
from rnnfused import FusedLayerNormGRU, FusedLayerNormGRUCell, FusedLayerNormLSTM, FusedLayerNormLSTMCell
from rnnfused import _layer_norm_ops as ln
from rnnfused._cells import CELL_KINDS

from helpers import backend_params, raised

T, B, I, H = 6, 3, 4, 5
EPS = 1e-5
MODULES = {"lstm": FusedLayerNormLSTM, "gru": FusedLayerNormGRU}
CELL_MODULES = {"lstm": FusedLayerNormLSTMCell, "gru": FusedLayerNormGRUCell}


# ------------------------------------------------------------------------------------------------ the naive truth
def naive_step(cell: str, p: dict, x, h, c):
    """One step from the issue's equations, every LayerNorm over the whole vector."""
    ih = F.layer_norm(x @ p["weight_ih"].t(), (p["weight_ih"].shape[0],), p["ln_ih_weight"], p["ln_ih_bias"], EPS)
    hh = F.layer_norm(h @ p["weight_hh"].t(), (p["weight_hh"].shape[0],), p["ln_hh_weight"], p["ln_hh_bias"], EPS)
    b_ih, b_hh = p.get("bias_ih", 0), p.get("bias_hh", 0)
    if cell == "lstm":
        i, f, g, o = (ih + hh + b_ih + b_hh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (c.shape[-1],), p["ln_c_weight"], p["ln_c_bias"], EPS))
        return h, c
    a, b = ih + b_ih, hh + b_hh
    r = torch.sigmoid(a[..., :H] + b[..., :H])
    z = torch.sigmoid(a[..., H:2 * H] + b[..., H:2 * H])
    n = torch.tanh(a[..., 2 * H:] + r * b[..., 2 * H:])
    return (1 - z) * n + z * h, None


def layer_params(module, layer: int, direction: int) -> dict:
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    return {name[:-len(sfx)]: p for name, p in module.named_parameters() if name.endswith(sfx)}


def naive_module(module, x, h0, c0, lengths, resets, zoneout_p=0.0):
    """The whole module, time-major x [T, B, I], one row and one segment at a time: -> output, h_n, c_n."""
    cell = "lstm" if module.mode == "LSTM" else "gru"
    D = 2 if module.bidirectional else 1
    outs, h_rows, c_rows = [], [], []
    for b in range(x.shape[1]):
        length = int(lengths[b]) if lengths is not None else x.shape[0]
        cuts = [0] + ([t for t in range(1, length) if resets[t, b]] if resets is not None else []) + [length]
        row_out, h_last, c_last = [], {}, {}
        for s, e in zip(cuts, cuts[1:]):
            seq = x[s:e, b]
            for layer in range(module.num_layers):
                dir_outs = []
                for d in range(D):
                    p = layer_params(module, layer, d)
                    h, c = h0[layer * D + d, b], (c0[layer * D + d, b] if c0 is not None else None)
                    steps = range(seq.shape[0] - 1, -1, -1) if d else range(seq.shape[0])
                    ys = [None] * seq.shape[0]
                    for t in steps:
                        h_new, c_new = naive_step(cell, p, seq[t], h, c)
                        h = zoneout_p * h + (1 - zoneout_p) * h_new
                        if c is not None:
                            c = zoneout_p * c + (1 - zoneout_p) * c_new
                        ys[t] = h
                    dir_outs.append(torch.stack(ys))
                    # forward directions end in the last segment, reverse ones in the first
                    if d == 0 or (layer * D + d) not in h_last:
                        h_last[layer * D + d], c_last[layer * D + d] = h, c
                seq = torch.cat(dir_outs, -1)
            row_out.append(seq)
        out = torch.cat(row_out)
        out = torch.cat([out, out.new_zeros(x.shape[0] - length, out.shape[1])])
        outs.append(out)
        h_rows.append(torch.stack([h_last[i] for i in range(module.num_layers * D)]))
        if c0 is not None:
            c_rows.append(torch.stack([c_last[i] for i in range(module.num_layers * D)]))
    return (torch.stack(outs, 1), torch.stack(h_rows, 1), torch.stack(c_rows, 1) if c0 is not None else None)


def randomize(module, seed=0):
    """Non-trivial LayerNorm parameters (the defaults, ones and zeros, would hide a swapped γ/β)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
    return module


def grads_of(outputs, params, seed=3):
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device) for o in outputs]
    return torch.autograd.grad(outputs, params, ups, allow_unused=True)


CASES = {
    "2layer-bidir": dict(num_layers=2, bidirectional=True),
    "batch_first": dict(batch_first=True),
    "packed": dict(bidirectional=True, packed=True),
    "resets": dict(num_layers=2, bidirectional=True, resets=True),
    "zoneout-eval": dict(zoneout=0.3, bidirectional=True),
    "no-bias": dict(bias=False),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell", list(MODULES))
@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "cuda", "triton"))
def test_module_matches_naive_loop(cell, case, backend, device):
    cfg = dict(CASES[case])
    packed, with_resets = cfg.pop("packed", False), cfg.pop("resets", False)
    torch.manual_seed(0)
    m = randomize(MODULES[cell](I, H, dtype=torch.float64, backend=backend, **cfg)).to(device)
    if "zoneout" in cfg:
        m.eval()  # deterministic: state = p·previous + (1 − p)·candidate
    D = 2 if m.bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64).to(device)
    h0 = torch.randn(m.num_layers * D, B, H, dtype=torch.float64).to(device)
    c0 = torch.randn(m.num_layers * D, B, H, dtype=torch.float64).to(device) if cell == "lstm" else None
    hx = (h0, c0) if cell == "lstm" else h0
    lengths = torch.tensor([T, 4, 2]) if packed else None
    resets = torch.zeros(T, B, dtype=torch.bool) if with_resets else None
    if with_resets:
        resets[3, 0] = resets[1, 2] = resets[5, 2] = True
        resets = resets.to(device)
    if packed:
        out, state = m(pack_padded_sequence(x, lengths), hx)
        out = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0]
    elif cfg.get("batch_first"):
        out, state = m(x.transpose(0, 1), hx, resets=resets)
        out = out.transpose(0, 1)
    else:
        out, state = m(x, hx, resets=resets)
    got = (out, *state) if cell == "lstm" else (out, state)
    want = naive_module(m, x, h0, c0, lengths, resets, m.zoneout_hidden)
    want = want if cell == "lstm" else want[:2]
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    params = list(m.parameters())
    for a, e in zip(grads_of(got, params), grads_of(want, params)):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize("cell", list(MODULES))
@pytest.mark.parametrize("backend,device", backend_params("reference", "cpu", "cuda", "triton"))
def test_cell_matches_naive_step(cell, backend, device):
    torch.manual_seed(1)
    m = randomize(CELL_MODULES[cell](I, H, dtype=torch.float64, backend=backend), seed=2).to(device)
    p = dict(m.named_parameters())
    x = torch.randn(B, I, dtype=torch.float64).to(device)
    h, c = torch.randn(B, H, dtype=torch.float64).to(device), torch.randn(B, H, dtype=torch.float64).to(device)
    got = m(x, (h, c)) if cell == "lstm" else (m(x, h),)
    want = naive_step(cell, p, x, h, c if cell == "lstm" else None)[:len(got)]
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    params = list(m.parameters())
    for a, e in zip(grads_of(got, params), grads_of(want, params)):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)
    # unbatched input, no state
    out = m(x[0])
    assert (out[0] if cell == "lstm" else out).shape == (H,)


# --------------------------------------------------------------------------------------------- the ops themselves
def op_inputs(cell: str, *, lengths=False, reverse=False, resets=False, zoneout=False, seed=0, t=T, b=B, h=H):
    kind = CELL_KINDS[cell]
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    G = kind.gates
    x = ln.LayerNormInputs(
        xg=r(t, b, G * h), h0=r(b, h), c0=r(b, h) if kind.has_cell_state else None, w_hh=r(G * h, h) * 0.5,
        b_hh=r(G * h) if kind.split_recurrent_grad else None, ln_hh_weight=r(G * h) * 0.5 + 1,
        ln_c_weight=r(h) * 0.5 + 1 if kind.has_cell_state else None, ln_c_bias=r(h) if kind.has_cell_state else None,
        lengths=torch.tensor([t] + [max(1, t - 2 - i) for i in range(b - 1)]) if lengths else None, reverse=reverse)
    if resets:
        rs = torch.rand(t, b, generator=g) < 0.3
        x = x._replace(resets=rs)
    if zoneout:
        S = 2 if kind.has_cell_state else 1
        x = x._replace(zoneout=torch.rand(S, t, b, h, generator=g, dtype=torch.float64).round())
    return kind, x


def _leaves(x):
    fields = ("xg", "h0", "c0", "w_hh", "b_hh", "ln_hh_weight", "ln_c_weight", "ln_c_bias")
    return x._replace(**{f: getattr(x, f).requires_grad_() for f in fields if getattr(x, f) is not None})


VARIANTS = {"plain": {}, "reverse": dict(reverse=True), "lengths": dict(lengths=True),
            "lengths-reverse": dict(lengths=True, reverse=True), "resets": dict(resets=True),
            "resets-reverse": dict(resets=True, reverse=True), "zoneout": dict(zoneout=True),
            "zoneout-resets-reverse": dict(zoneout=True, resets=True, reverse=True),
            "zoneout-lengths": dict(zoneout=True, lengths=True)}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cell", list(MODULES))
def test_cpu_op_matches_reference(cell, variant):
    kind, x = op_inputs(cell, **VARIANTS[variant])
    x = _leaves(x)
    got = rnnfused.backends.get_backend("cpu", "cpu", torch.float64).run_layer_norm(kind, x)
    want = ln.reference_outputs(kind, x)
    got = [t for t in got if t is not None]
    leaves = [t for t in x if isinstance(t, torch.Tensor) and t.requires_grad]
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    for a, e in zip(grads_of(got, leaves), grads_of(want, leaves)):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)


@pytest.mark.parametrize("variant", ["plain", "lengths-reverse", "resets", "zoneout-resets-reverse"])
@pytest.mark.parametrize("cell", list(MODULES))
def test_gradcheck_cpu_op(cell, variant):
    kind, x = op_inputs(cell, t=4, b=2, h=3, **VARIANTS[variant])
    x = _leaves(x)
    op = ln.layer_norm_op(kind)
    names = ln.forward_arg_names(kind)
    diff = [n for n in names if isinstance(getattr(x, n, None), torch.Tensor) and getattr(x, n).requires_grad]

    def fn(*tensors):
        y = x._replace(**dict(zip(diff, tensors)))
        outs = op(*ln.forward_args(kind, y))
        return outs[:3] if kind.has_cell_state else outs[:2]

    # "plain": the full Jacobian; the variants: fast_mode (vᵀJu for random u, v: any wrong Jacobian entry fails it
    # w.p. 1) at a fraction of the cost (CI time).
    assert torch.autograd.gradcheck(fn, [getattr(x, n) for n in diff], atol=1e-8, fast_mode=variant != "plain")


@pytest.mark.parametrize("cell", list(MODULES))
def test_inference_keeps_nothing_and_matches_training(cell):
    kind, x = op_inputs(cell, lengths=True)
    op = ln.layer_norm_op(kind)
    trained = op(*ln.forward_args(kind, x))
    inferred = op(*ln.forward_args(kind, x._replace(train=False)))
    n_state = 3 if kind.has_cell_state else 2
    for a, e in zip(inferred[:n_state], trained[:n_state]):
        assert torch.equal(a, e)
    assert all(t.numel() == 0 for t in inferred[n_state:])
    assert trained[n_state].shape == (T, B, ln.saved_width(kind, H))
    m = MODULES[cell](I, H, dtype=torch.float64)
    with torch.no_grad():
        out_nograd = m(torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    out = m(torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    assert torch.equal(out_nograd, out)


@pytest.mark.parametrize("cell", list(MODULES))
def test_float32_and_zoneout_training(cell):
    torch.manual_seed(0)
    m = randomize(MODULES[cell](I, H, num_layers=2, zoneout=0.2))
    ref = randomize(MODULES[cell](I, H, num_layers=2, zoneout=0.2, backend="reference"))
    x = torch.randn(T, B, I)
    torch.manual_seed(5)
    got = m(x)[0]
    torch.manual_seed(5)  # the same masks
    want = ref(x)[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    torch.manual_seed(6)
    assert not torch.allclose(m(x)[0], got)  # fresh masks per call in training


def test_parameters_and_state_dict():
    m = FusedLayerNormLSTM(I, H, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    for layer in range(2):
        for sfx in ("", "_reverse"):
            for name, size in (("ln_ih_weight", 4 * H), ("ln_ih_bias", 4 * H), ("ln_hh_weight", 4 * H),
                               ("ln_hh_bias", 4 * H), ("ln_c_weight", H), ("ln_c_bias", H)):
                p = getattr(m, f"{name}_l{layer}{sfx}")
                assert p.shape == (size,) and f"{name}_l{layer}{sfx}" in names
                assert torch.equal(p, torch.full_like(p, 1.0 if "weight" in name else 0.0))
    assert "weight_ih_l1_reverse" in m.state_dict()
    g = FusedLayerNormGRU(I, H)
    assert sorted(n for n in dict(g.named_parameters()) if n.startswith("ln_")) == \
        ["ln_hh_bias_l0", "ln_hh_weight_l0", "ln_ih_bias_l0", "ln_ih_weight_l0"]
    with torch.no_grad():
        g.ln_hh_weight_l0.zero_()
    g.reset_parameters()
    assert torch.equal(g.ln_hh_weight_l0, torch.ones(3 * H))
    c = FusedLayerNormLSTMCell(I, H)
    assert torch.equal(c.ln_c_weight, torch.ones(H)) and torch.equal(c.ln_ih_bias, torch.zeros(4 * H))


def test_torch_load_default_weights_only():
    m = FusedLayerNormGRU(I, H, bidirectional=True)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf)
    x = torch.randn(T, B, I)
    assert torch.equal(loaded(x)[0], m(x)[0])


def test_torch_compile_fullgraph():
    m = randomize(FusedLayerNormLSTM(I, H, dtype=torch.float64))
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    eager = m(x)[0]
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")(x)[0]
    torch.testing.assert_close(compiled, eager)
    g_eager = torch.autograd.grad(eager.sum(), [x, m.ln_hh_weight_l0])
    g_comp = torch.autograd.grad(compiled.sum(), [x, m.ln_hh_weight_l0])
    for a, e in zip(g_comp, g_eager):
        torch.testing.assert_close(a, e)


def test_errors_name_the_argument():
    assert "proj_size" in str(raised(lambda: FusedLayerNormLSTM(I, H, proj_size=2)))
    assert "proj_size" in str(raised(lambda: FusedLayerNormGRU(I, H, proj_size=2)))
    assert isinstance(raised(lambda: FusedLayerNormLSTM(I, H).to_torch()), TypeError)
    kind, x = op_inputs("lstm")
    op = ln.layer_norm_op(kind)
    for field, bad, word in (("w_hh", x.w_hh[:, :2], "w_hh"), ("ln_hh_weight", x.ln_hh_weight[:3], "ln_hh_weight"),
                             ("ln_c_bias", x.ln_c_bias.float(), "ln_c_bias"), ("h0", x.h0[:1], "h0"),
                             ("xg", x.xg[..., :-1], "xg"), ("resets", torch.zeros(T, B), "resets")):
        err = raised(lambda: op(*ln.forward_args(kind, x._replace(**{field: bad}))))
        assert isinstance(err, RuntimeError) and word in str(err), (field, err)
    err = raised(lambda: FusedLayerNormLSTM(I, H)(torch.randn(T, B, I + 1)))
    assert err is not None and "input" in str(err)


def test_persistent_cuda_path_declines_layer_norm_cells():
    path, why = rnnfused.cuda_path("lstm", 64, 8, 32, 32, layer_norm=True, explain=True)
    assert path == "stepwise" and "LayerNorm" in why


@pytest.mark.parametrize("cell", list(MODULES))
def test_weight_drop_composes_and_acts_only_in_training(cell):
    torch.manual_seed(0)
    m = randomize(MODULES[cell](I, H, num_layers=2, bidirectional=True, weight_drop=0.5, dtype=torch.float64))
    plain = randomize(MODULES[cell](I, H, num_layers=2, bidirectional=True, dtype=torch.float64))
    x = torch.randn(T, B, I, dtype=torch.float64)
    m.eval(), plain.eval()
    assert torch.equal(m(x)[0], plain(x)[0])
    m.train()
    dropped = m(x)[0]
    assert not torch.allclose(dropped, plain(x)[0])
    dropped.sum().backward()
    assert m.weight_hh_l1_reverse.grad is not None and m.ln_hh_weight_l1_reverse.grad is not None
