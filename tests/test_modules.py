"""FusedLSTM / FusedGRU / FusedRNN and the fused cells against torch.nn: parity of outputs, states and all gradients,
state_dict interchange, packing, compile, pickling, training trajectory, and the errors nn.* raises."""
import copy
import io
import itertools
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnfused
from rnnfused import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell

FUSED = {"lstm": FusedLSTM, "gru": FusedGRU, "rnn_tanh": FusedRNN, "rnn_relu": FusedRNN}
TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}
I, H, P, T, B = 3, 5, 2, 6, 4


def make_pair(cell, dtype=torch.float64, seed=0, **cfg):
    extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn") else {}
    torch.manual_seed(seed)
    ref = TORCH[cell](I, H, **extra, **cfg).to(dtype)
    fused = FUSED[cell](I, H, **extra, **cfg).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def make_input(mode, batch_first, dtype, seed=1):
    """mode: batched | unbatched | packed_sorted | packed_unsorted; returns (input, batch size)."""
    g = torch.Generator().manual_seed(seed)
    if mode == "unbatched":
        return torch.randn(T, I, generator=g, dtype=dtype).requires_grad_(), None
    x = torch.randn(B, T, I, generator=g, dtype=dtype) if batch_first else torch.randn(T, B, I, generator=g,
                                                                                          dtype=dtype)
    x.requires_grad_()
    if mode == "batched":
        return x, B
    lengths = [T, 4, 4, 1] if mode == "packed_sorted" else [3, T, 1, 5]
    # A builder: each run packs afresh, so two backward passes never share the packing graph.
    return (x, lambda: pack_padded_sequence(x, lengths, batch_first=batch_first,
                                            enforce_sorted=(mode == "packed_sorted"))), B


def make_hx(cell, num_layers, bidirectional, proj, batch, dtype, seed=2):
    g = torch.Generator().manual_seed(seed)
    D = 2 if bidirectional else 1
    lead = (num_layers * D,) + ((batch,) if batch is not None else ())
    h = torch.randn(*lead, proj or H, generator=g, dtype=dtype).requires_grad_()
    if cell == "lstm":
        return (h, torch.randn(*lead, H, generator=g, dtype=dtype).requires_grad_())
    return h


def flatten(out):
    """All tensors of a module's (output, hidden) in order."""
    output, hidden = out
    tensors = [output.data if isinstance(output, PackedSequence) else output]
    tensors += list(hidden) if isinstance(hidden, tuple) else [hidden]
    return tensors


def run_and_grad(module, inp, hx, leaves, upstream):
    out = module(inp() if callable(inp) else inp, hx)
    tensors = flatten(out)
    grads = torch.autograd.grad(tensors, leaves + list(module.parameters()), upstream, allow_unused=True)
    return tensors, grads


def _grid():
    """Every cell × num_layers × direction × input mode × proj_size; batch_first, bias and hx given/None rotate
    through all 8 combinations along the grid (each combination meets every cell and input mode)."""
    main_axes = itertools.product(FUSED, (1, 2, 3), (False, True), (0, P),
                                  ("batched", "unbatched", "packed_sorted", "packed_unsorted"))
    cases = [c for c in main_axes if not (c[3] and c[0] != "lstm")]
    for i, (cell, layers, bidir, proj, mode) in enumerate(cases):
        bf, bias, with_hx = bool(i & 1), not (i >> 1) & 1, not (i >> 2) & 1
        ident = f"{cell}-L{layers}-{'bi' if bidir else 'uni'}-{'bf' if bf else 'tf'}-{'bias' if bias else 'nobias'}" \
                f"-P{proj}-{'hx' if with_hx else 'nohx'}-{mode}"
        yield pytest.param(cell, layers, bidir, bf, bias, proj, with_hx, mode, id=ident)


def _parity(cell, layers, bidir, bf, bias, proj, with_hx, mode, dtype, atol, rtol):
    cfg = dict(num_layers=layers, bidirectional=bidir, batch_first=bf, bias=bias)
    if proj:
        cfg["proj_size"] = proj
    ref, fused = make_pair(cell, dtype, **cfg)
    inp, batch = make_input(mode, bf, dtype)
    leaves = []
    if isinstance(inp, tuple):
        leaves.append(inp[0])
        inp = inp[1]
    else:
        leaves.append(inp)
    hx = make_hx(cell, layers, bidir, proj, batch, dtype) if with_hx else None
    if hx is not None:
        leaves += list(hx) if isinstance(hx, tuple) else [hx]
    expected = flatten(ref(inp() if callable(inp) else inp, hx))
    g = torch.Generator().manual_seed(3)
    upstream = [torch.randn(t.shape, generator=g, dtype=dtype) for t in expected]
    exp_t, exp_g = run_and_grad(ref, inp, hx, leaves, upstream)
    got_t, got_g = run_and_grad(fused, inp, hx, leaves, upstream)
    for a, e in zip(got_t, exp_t):
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol)
    names = [f"leaf{i}" for i in range(len(leaves))] + [n for n, _ in fused.named_parameters()]
    for name, a, e in zip(names, got_g, exp_g):
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("cell,layers,bidir,bf,bias,proj,with_hx,mode", list(_grid()))
def test_parity_with_torch_nn_float64(cell, layers, bidir, bf, bias, proj, with_hx, mode):
    _parity(cell, layers, bidir, bf, bias, proj, with_hx, mode, torch.float64, 1e-10, 1e-10)


FLOAT32_CASES = [p for i, p in enumerate(_grid()) if i % 3 == 0]


@pytest.mark.parametrize("cell,layers,bidir,bf,bias,proj,with_hx,mode", FLOAT32_CASES)
def test_parity_with_torch_nn_float32(cell, layers, bidir, bf, bias, proj, with_hx, mode):
    # Both sides round differently in float32; 1e-5 is ~100 ulps at these magnitudes, far below a real bug.
    _parity(cell, layers, bidir, bf, bias, proj, with_hx, mode, torch.float32, 2e-5, 1e-4)


# ----------------------------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck_two_layer_bidirectional_packed(cell):
    ref, fused = make_pair(cell, num_layers=2, bidirectional=True, **({"proj_size": 2} if cell == "lstm" else {}))
    x = torch.randn(4, 3, I, dtype=torch.float64, requires_grad=True)
    params = list(fused.parameters())
    names = [n for n, _ in fused.named_parameters()]

    def fn(x, *ps):
        packed = pack_padded_sequence(x, [2, 4, 1], enforce_sorted=False)
        out, hidden = torch.func.functional_call(fused, dict(zip(names, ps)), (packed,))
        return flatten((out, hidden))

    # fast_mode: vᵀJu for random u, v (any wrong Jacobian entry fails it w.p. 1); the full Jacobian of this module
    # took ~100 s of CI per cell, and every op inside has its own full float64 gradcheck (test_ops.py).
    assert torch.autograd.gradcheck(fn, [x] + params, eps=1e-6, atol=1e-7, fast_mode=True)


CELLS = {"lstm": (FusedLSTMCell, nn.LSTMCell, {}), "gru": (FusedGRUCell, nn.GRUCell, {}),
         "rnn_tanh": (FusedRNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
         "rnn_relu": (FusedRNNCell, nn.RNNCell, {"nonlinearity": "relu"})}


def make_cells(cell, bias=True, dtype=torch.float64):
    fcls, tcls, kw = CELLS[cell]
    torch.manual_seed(0)
    ref = tcls(I, H, bias, **kw).to(dtype)
    fused = fcls.from_module(ref)
    return ref, fused


@pytest.mark.parametrize("cell", list(CELLS))
def test_gradcheck_cells(cell):
    _, fused = make_cells(cell)
    names = [n for n, _ in fused.named_parameters()]
    x = torch.randn(3, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, H, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, H, dtype=torch.float64, requires_grad=True)

    def fn(x, h, c, *ps):
        args = (x, (h, c)) if cell == "lstm" else (x, h)
        out = torch.func.functional_call(fused, dict(zip(names, ps)), args)
        return out if isinstance(out, tuple) else (out,)

    assert torch.autograd.gradcheck(fn, [x, h, c] + list(fused.parameters()), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "nohx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_cells_match_torch_cells(cell, bias, with_hx, batched):
    ref, fused = make_cells(cell, bias)
    lead = (3,) if batched else ()
    x = torch.randn(*lead, I, dtype=torch.float64, requires_grad=True)
    hx = None
    if with_hx:
        h = torch.randn(*lead, H, dtype=torch.float64, requires_grad=True)
        hx = (h, torch.randn(*lead, H, dtype=torch.float64, requires_grad=True)) if cell == "lstm" else h
    exp, got = ref(x, hx), fused(x, hx)
    exp = exp if isinstance(exp, tuple) else (exp,)
    got = got if isinstance(got, tuple) else (got,)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    leaves = [x] + ([] if hx is None else list(hx) if isinstance(hx, tuple) else [hx])
    up = [torch.randn_like(e) for e in exp]
    ge = torch.autograd.grad(exp, leaves + list(ref.parameters()), up)
    gg = torch.autograd.grad(got, leaves + list(fused.parameters()), up)
    for a, e in zip(gg, ge):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


def test_cell_decoder_loop_matches_torch():
    """A seq2seq-style decoder: feed each step's output back as the next input."""
    ref = nn.LSTMCell(H, H).double()
    fused = FusedLSTMCell.from_module(ref)
    x = torch.randn(2, H, dtype=torch.float64)
    s_ref = s_fused = None
    y_ref = y_fused = x
    for _ in range(5):
        s_ref = ref(y_ref, s_ref)
        s_fused = fused(y_fused, s_fused)
        y_ref, y_fused = s_ref[0], s_fused[0]
    torch.testing.assert_close(y_fused, y_ref, atol=1e-12, rtol=1e-12)


# ------------------------------------------------------------------------------------------------- interop
@pytest.mark.parametrize("cell", list(FUSED))
def test_state_dict_round_trips_both_ways_strict(cell):
    cfg = dict(num_layers=2, bidirectional=True, **({"proj_size": P} if cell == "lstm" else {}))
    ref, fused = make_pair(cell, **cfg)
    other_ref, other_fused = make_pair(cell, seed=7, **cfg)
    other_fused.load_state_dict(ref.state_dict(), strict=True)
    other_ref.load_state_dict(fused.state_dict(), strict=True)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), other_fused.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert list(fused.state_dict()) == list(ref.state_dict())
    assert fused._flat_weights_names == ref._flat_weights_names
    assert [[w.shape for w in ws] for ws in fused.all_weights] == [[w.shape for w in ws] for ws in ref.all_weights]


@pytest.mark.parametrize("cell", list(FUSED))
def test_from_module_and_to_torch(cell):
    ref, _ = make_pair(cell, num_layers=2, batch_first=True)
    fused = FUSED[cell].from_module(ref, backend="cpu")
    assert fused.backend == "cpu" and fused.batch_first and fused.num_layers == 2
    back = fused.to_torch()
    assert type(back) is TORCH[cell]
    x = torch.randn(2, T, I, dtype=torch.float64)
    torch.testing.assert_close(back(x)[0], ref(x)[0], atol=0, rtol=0)
    torch.testing.assert_close(fused(x)[0], ref(x)[0], atol=1e-12, rtol=1e-12)
    with pytest.raises(TypeError):
        FUSED[cell].from_module(nn.Linear(2, 2))


def test_constructor_matches_nn_and_initialisation_distribution():
    torch.manual_seed(0)
    a = nn.LSTM(3, 7, 2, True, True, 0.0, True, 2)  # positional, as nn.LSTM takes them
    torch.manual_seed(0)
    b = FusedLSTM(3, 7, 2, True, True, 0.0, True, 2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)  # same shapes, same init calls in the same order
    rnn = FusedRNN(3, 4, 1, "relu")
    assert rnn.mode == "RNN_RELU" and rnn.nonlinearity == "relu"
    with pytest.raises(ValueError, match="proj_size"):
        FusedGRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        FusedRNN(3, 4, nonlinearity="gelu")


def test_repr_and_flatten_parameters():
    m = FusedLSTM(3, 4, num_layers=2, bidirectional=True, backend="cpu")
    assert repr(m) == "FusedLSTM(3, 4, num_layers=2, bidirectional=True, backend='cpu')"
    m.flatten_parameters()  # a no-op, like nn.LSTM on the CPU
    assert "FusedLSTMCell(3, 4, bias=False)" == repr(FusedLSTMCell(3, 4, bias=False))


@pytest.mark.parametrize("cell", list(FUSED))
def test_deepcopy_pickle_and_torch_save(cell):
    _, fused = make_pair(cell, num_layers=2)
    fused.backend = "cpu"
    x = torch.randn(T, 2, I, dtype=torch.float64)
    expected = fused(x)[0]
    clones = [copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))]
    buf = io.BytesIO()
    torch.save(fused, buf)
    buf.seek(0)
    clones.append(torch.load(buf, weights_only=False))
    for c in clones:
        assert type(c) is type(fused) and c.backend == "cpu"
        torch.testing.assert_close(c(x)[0], expected, atol=0, rtol=0)


def test_torch_compile_fullgraph_two_layer_lstm():
    torch.manual_seed(0)
    m = FusedLSTM(I, H, num_layers=2, batch_first=True)
    x = torch.randn(3, T, I)
    compiled = torch.compile(m, fullgraph=True)
    out_c, (h_c, c_c) = compiled(x)
    out_e, (h_e, c_e) = m(x)
    for a, b in ((out_c, out_e), (h_c, h_e), (c_c, c_e)):
        torch.testing.assert_close(a, b)
    out_c.sum().backward()
    g_c = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    out_e.sum().backward()
    for a, p in zip(g_c, m.parameters()):
        torch.testing.assert_close(a, p.grad)


# ------------------------------------------------------------------------------------------------- dropout
def test_dropout_only_between_layers_in_training():
    ref, fused = make_pair("gru", num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.float64)
    fused.eval()
    ref.eval()
    torch.testing.assert_close(fused(x)[0], ref(x)[0], atol=1e-12, rtol=1e-12)
    fused.train()
    a, b = fused(x)[0], fused(x)[0]
    assert not torch.equal(a, b), "training mode must apply dropout between layers"
    single = FusedGRU(I, H, num_layers=1).double().train()
    single.dropout = 0.9  # no layer follows the only layer: nothing to drop
    assert torch.equal(single(x)[0], single(x)[0])


def test_dropout_is_f_dropout_on_each_inner_layer_output():
    """Same RNG stream: the module equals running the layers by hand with F.dropout between them."""
    torch.manual_seed(0)
    m = FusedLSTM(8, 16, num_layers=3, dropout=0.25).double().train()
    x = torch.randn(5, 4, 8, dtype=torch.float64)
    torch.manual_seed(123)
    out, (h_n, _) = m(x)
    layers = [FusedLSTM(8 if k == 0 else 16, 16).double() for k in range(3)]
    for k, layer in enumerate(layers):
        layer.load_state_dict({n.replace(f"_l{k}", "_l0"): p for n, p in m.state_dict().items() if f"_l{k}" in n})
    torch.manual_seed(123)
    y = x
    for k, layer in enumerate(layers):
        y = layer(y)[0]
        if k < 2:
            y = nn.functional.dropout(y, 0.25, training=True)
    torch.testing.assert_close(out, y, atol=0, rtol=0)
    assert (out != 0).all()  # no dropout after the last layer


# ---------------------------------------------------------------------------------------------- training
def test_training_trajectory_matches_nn_lstm():
    torch.manual_seed(0)
    ref_model = nn.ModuleDict({"rnn": nn.LSTM(4, 8, num_layers=2, batch_first=True), "head": nn.Linear(8, 2)})
    ref_model = ref_model.double()
    fused_model = copy.deepcopy(ref_model)
    fused_model["rnn"] = FusedLSTM.from_module(ref_model["rnn"])
    x = torch.randn(32, 10, 4, dtype=torch.float64)
    y = (x[:, :, 0].sum(1) > 0).long()  # is the sum of the first feature positive?

    def train(model):
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        losses = []
        for _ in range(30):
            out, _ = model["rnn"](x)
            loss = nn.functional.cross_entropy(model["head"](out[:, -1]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    ref_losses, fused_losses = train(ref_model), train(fused_model)
    assert fused_losses[-1] < 0.5 * fused_losses[0], "the loss must fall"
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(ref_losses), atol=1e-9, rtol=1e-9)


# --------------------------------------------------------------------------------------------------- errors
def _error_of(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - we compare whatever nn raises
        return exc
    return None


BAD_CALLS = {
    "4-D input": lambda m, dt: m(torch.randn(2, 3, 4, I, dtype=dt)),
    "wrong input size": lambda m, dt: m(torch.randn(T, B, I + 1, dtype=dt)),
    "dtype mismatch": lambda m, dt: m(torch.randn(T, B, I, dtype=torch.float32)),
    "wrong hx batch": lambda m, dt: m(torch.randn(T, B, I, dtype=dt), _hx(m, B + 1, dt)),
    "wrong hx layers": lambda m, dt: m(torch.randn(T, B, I, dtype=dt), _hx(m, B, dt, layers=3)),
    "2-D hx for batched input": lambda m, dt: m(torch.randn(T, B, I, dtype=dt), _hx(m, B, dt, squeeze=True)),
    "3-D hx for unbatched input": lambda m, dt: m(torch.randn(T, I, dtype=dt), _hx(m, B, dt)),
    "unsorted packed with enforce_sorted": lambda m, dt: m(pack_padded_sequence(torch.randn(T, 3, I, dtype=dt),
                                                                                 [2, T, 1])),
}


def _hx(m, batch, dtype, layers=None, squeeze=False):
    D = 2 if m.bidirectional else 1
    n = (layers or m.num_layers) * D
    h = torch.zeros(n, batch, m.proj_size or m.hidden_size, dtype=dtype)
    c = torch.zeros(n, batch, m.hidden_size, dtype=dtype)
    if squeeze:
        h, c = h[0], c[0]
    return (h, c) if m.mode == "LSTM" else h


@pytest.mark.parametrize("what", list(BAD_CALLS))
@pytest.mark.parametrize("cell", list(FUSED))
def test_bad_input_raises_what_nn_raises(cell, what):
    ref, fused = make_pair(cell, num_layers=2)
    exp = _error_of(lambda: BAD_CALLS[what](ref, torch.float64))
    got = _error_of(lambda: BAD_CALLS[what](fused, torch.float64))
    assert exp is not None, "the case must be an error for nn.* too"
    assert type(got) is type(exp), f"nn raised {type(exp).__name__}: {exp}; fused raised {got!r}"
    assert str(got) == str(exp) or what in ("unsorted packed with enforce_sorted",)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_bad_input(cell):
    ref, fused = make_cells(cell)
    for bad in (lambda m: m(torch.randn(2, 2, I, dtype=torch.float64)),
                lambda m: m(torch.randn(2, I + 1, dtype=torch.float64))):
        exp, got = _error_of(lambda: bad(ref)), _error_of(lambda: bad(fused))
        assert exp is not None and type(got) is type(exp), (exp, got)


def test_exports():
    for name in ("FusedLSTM", "FusedGRU", "FusedRNN", "FusedLSTMCell", "FusedGRUCell", "FusedRNNCell"):
        assert getattr(rnnfused, name) is globals()[name]
