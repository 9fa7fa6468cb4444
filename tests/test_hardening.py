"""Behaviour under everything real training code does: bad input on every entry point, odd strides, NaN/inf,
determinism, autocast, double backward, export/compile, memory growth in T. (DDP/FSDP: test_distributed.py;
packaging: test_packaging.py; GPU-only parts skip without a GPU.)"""
import pytest
import torch
from torch import nn

import rnnfused
from rnnfused import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell
from rnnfused import functional as RF
from rnnfused._cells import CELL_KINDS
from rnnfused._inputs import forward_args
from rnnfused._op_family import op_for

from helpers import Case, has_cuda, make_inputs, raised, requires_cuda, run_backend, tensor_fields

I, H, T, B = 4, 5, 6, 3


_error = raised


# ------------------------------------------------------------------------------------------- bad input: modules
MODULE_PAIRS = {
    "LSTM": (lambda: nn.LSTM(I, H, 2), FusedLSTM.from_module),
    "GRU": (lambda: nn.GRU(I, H, 2), FusedGRU.from_module),
    "RNN": (lambda: nn.RNN(I, H, 2, nonlinearity="relu"), FusedRNN.from_module),
    "LSTMCell": (lambda: nn.LSTMCell(I, H), FusedLSTMCell.from_module),
    "GRUCell": (lambda: nn.GRUCell(I, H), FusedGRUCell.from_module),
    "RNNCell": (lambda: nn.RNNCell(I, H), FusedRNNCell.from_module),
}


def _states(m, batch, dtype=torch.float32, device="cpu", layers=None, rank=3):
    cell = isinstance(m, nn.RNNCellBase)
    lead = () if rank == 2 and not cell else None
    if cell:
        shape = (batch, m.hidden_size) if rank == 3 else (m.hidden_size,)
        h = torch.zeros(shape, dtype=dtype, device=device)
        return (h, h.clone()) if isinstance(m, (nn.LSTMCell, FusedLSTMCell)) else h
    n = (layers or m.num_layers) * (2 if m.bidirectional else 1)
    lead = (n, batch) if rank == 3 else (n,)
    h = torch.zeros(*lead, m.hidden_size, dtype=dtype, device=device)
    return (h, h.clone()) if m.mode == "LSTM" else h


def _x(m, *, steps=T, batch=B, features=I, dtype=torch.float32, device="cpu"):
    if isinstance(m, nn.RNNCellBase):
        return torch.randn(batch, features, device=device).to(dtype)
    return torch.randn(steps, batch, features, device=device).to(dtype)


BAD_MODULE_CALLS = {
    "rank 4 input": lambda m: m(_x(m).unsqueeze(0)),
    "wrong feature size": lambda m: m(_x(m, features=I + 2)),
    "wrong hx batch": lambda m: m(_x(m), _states(m, B + 1)),
    "wrong hx rank": lambda m: m(_x(m), _states(m, B, rank=2)),
    "float64 input, float32 weights": lambda m: m(_x(m, dtype=torch.float64)),
    "int64 input": lambda m: m(_x(m).long()),
    "float64 hx": lambda m: m(_x(m), _states(m, B, dtype=torch.float64)),
    "input on meta device": lambda m: m(_x(m, device="meta")),
    "T=0": lambda m: m(_x(m, steps=0)),
}


@pytest.mark.parametrize("what", list(BAD_MODULE_CALLS))
@pytest.mark.parametrize("name", list(MODULE_PAIRS))
def test_module_bad_input_same_exception_class_as_nn(name, what):
    make, fuse = MODULE_PAIRS[name]
    torch.manual_seed(0)
    ref = make()
    fused = fuse(ref)
    torch.manual_seed(1)
    exp = _error(lambda: BAD_MODULE_CALLS[what](ref))
    torch.manual_seed(1)
    got = _error(lambda: BAD_MODULE_CALLS[what](fused))
    if exp is None:  # nn.* accepts it (e.g. T=0 does not exist for a cell): so must we, with the same result
        assert got is None, f"nn accepted it; fused raised {got!r}"
        return
    assert got is not None, f"nn raised {exp!r}; fused accepted the input"
    assert type(got) is type(exp), f"nn raised {type(exp).__name__}: {exp}; fused raised {got!r}"


@pytest.mark.parametrize("name", list(MODULE_PAIRS))
def test_module_empty_batch_gives_empty_results_like_nn(name):
    make, fuse = MODULE_PAIRS[name]
    ref = make()
    fused = fuse(ref)
    x = _x(ref, batch=0).requires_grad_()
    exp, got = ref(x), fused(x)
    flat = lambda o: [t for t in (o if isinstance(o, tuple) else (o,)) for t in (t if isinstance(t, tuple) else (t,))]  # noqa: E731,E501
    for a, e in zip(flat(got), flat(exp)):
        assert a.shape == e.shape and a.dtype == e.dtype
    sum(t.sum() for t in flat(got)).backward()
    assert all(p.grad is not None and not p.grad.any() for p in fused.parameters())


# -------------------------------------------------------------------------------- bad input: functional, raw ops
def _lstm_inputs(**over):
    return make_inputs(Case("lstm", B=2, T=3, I=4, H=5), requires_grad=False)._replace(**over)


RAW_BAD = {
    "rank 2 input": (dict(input=torch.randn(3, 4, dtype=torch.float64)), "input"),
    "wrong feature size": (dict(input=torch.randn(3, 2, 6, dtype=torch.float64)), "w_ih"),
    "wrong h0 shape": (dict(h0=torch.randn(2, 4, dtype=torch.float64)), "h0"),
    "wrong c0 shape": (dict(c0=torch.randn(1, 5, dtype=torch.float64)), "c0"),
    "float32 h0": (dict(h0=torch.randn(2, 5)), "h0"),
    "float32 w_hh": (dict(w_hh=torch.randn(20, 5)), "w_hh"),
    "int input": (dict(input=torch.ones(3, 2, 4, dtype=torch.int32)), "input"),
    "T=0": (dict(input=torch.randn(0, 2, 4, dtype=torch.float64)), "seq_len"),
    "B=0": (dict(input=torch.randn(3, 0, 4, dtype=torch.float64), h0=torch.zeros(0, 5, dtype=torch.float64),
                 c0=torch.zeros(0, 5, dtype=torch.float64)), "batch"),
    "h0 on meta": (dict(h0=torch.randn(2, 5, dtype=torch.float64, device="meta")), "h0"),
    "bad lengths": (dict(lengths=torch.tensor([0, 3])), "lengths"),
}


@pytest.mark.parametrize("what", list(RAW_BAD))
@pytest.mark.parametrize("entry", ["raw op", "functional cpu", "functional reference"])
def test_functional_and_raw_op_reject_bad_input_naming_the_argument(entry, what):
    over, name = RAW_BAD[what]
    x = _lstm_inputs(**over)
    kind = CELL_KINDS["lstm"]
    if entry == "raw op":
        fn = lambda: op_for(kind)(*forward_args(kind, x))  # noqa: E731
    else:
        backend = entry.split()[1]
        fn = lambda: RF.lstm(x.input, (x.h0, x.c0), x.w_ih, x.w_hh, x.b_ih, x.b_hh, lengths=x.lengths,  # noqa: E731
                             backend=backend)
    exc = _error(fn)
    assert isinstance(exc, (ValueError, RuntimeError)), f"expected a ValueError/RuntimeError, got {exc!r}"
    assert name in str(exc), f"the message must name {name!r}: {exc}"


def test_raw_backward_op_checks_sizes_instead_of_reading_out_of_bounds():
    x = _lstm_inputs()
    kind = CELL_KINDS["lstm"]
    out = op_for(kind)(*forward_args(kind, x))
    g = torch.zeros_like(out[0])
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.rnnfused.lstm_backward(g[:2], torch.zeros_like(out[1]), torch.zeros_like(out[2]), x.input, x.h0,
                                         x.c0, x.w_ih, x.w_hh, None, None, False, out[0], out[3], out[4])
    with pytest.raises(RuntimeError, match="cells"):
        torch.ops.rnnfused.lstm_backward(g, torch.zeros_like(out[1]), torch.zeros_like(out[2]), x.input, x.h0, x.c0,
                                         x.w_ih, x.w_hh, None, None, False, out[0], out[3], out[4].double()[:, :1])


# ------------------------------------------------------------------------------------ strides, NaN/inf, sizes
def _odd_layouts(x):
    """The same values as x [T, B, I] laid out non-contiguously, strided and expanded."""
    transposed = x.transpose(0, 1).contiguous().transpose(0, 1)           # non-contiguous (batch-major storage)
    strided = torch.zeros(x.shape[0], x.shape[1], 2 * x.shape[2], dtype=x.dtype)[..., ::2].copy_(x)
    return {"transposed": transposed, "strided": strided}


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_noncontiguous_strided_and_expanded_inputs_match_contiguous(mode):
    cls = {"lstm": FusedLSTM, "gru": FusedGRU, "rnn": FusedRNN}[mode]
    torch.manual_seed(0)
    m = cls(I, H, 2).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected = m(x)[0]
    for name, y in _odd_layouts(x).items():
        assert not y.is_contiguous()
        torch.testing.assert_close(m(y)[0], expected, atol=0, rtol=0, msg=name)
    row = torch.randn(T, 1, I, dtype=torch.float64)
    expanded = row.expand(T, B, I)  # stride 0 over the batch
    torch.testing.assert_close(m(expanded)[0], m(expanded.contiguous())[0], atol=0, rtol=0)
    # Weights seen through a strided view (e.g. tied or sliced parameters) go through the functional API.
    w_ih = torch.randn(2 * I, 4 * H if mode == "lstm" else 3 * H if mode == "gru" else H, dtype=torch.float64).t()
    fn = {"lstm": RF.lstm, "gru": RF.gru, "rnn": RF.rnn}[mode]
    G = w_ih.shape[0] // H
    w_hh = torch.randn(G * H, H, dtype=torch.float64)
    xx = torch.randn(T, B, 2 * I, dtype=torch.float64)
    torch.testing.assert_close(fn(xx, None, w_ih, w_hh)[0], fn(xx, None, w_ih.contiguous(), w_hh)[0], atol=0,
                               rtol=0)


@pytest.mark.parametrize("make", [lambda: nn.LSTM(I, H, 2), lambda: nn.GRU(I, H, 2), lambda: nn.RNN(I, H, 2)],
                         ids=["lstm", "gru", "rnn"])
def test_nan_and_inf_propagate_like_nn(make):
    torch.manual_seed(0)
    ref = make()
    fused = {"LSTM": FusedLSTM, "GRU": FusedGRU, "RNN_TANH": FusedRNN}[ref.mode].from_module(ref)
    x = torch.randn(T, B, I)
    x[2, 1, 0] = float("nan")
    x[3, 0, 1] = float("inf")
    x[1, 2, 3] = -float("inf")
    exp, got = ref(x)[0], fused(x)[0]
    assert torch.equal(torch.isnan(got), torch.isnan(exp))
    assert torch.equal(torch.isinf(got), torch.isinf(exp))
    finite = torch.isfinite(exp)
    torch.testing.assert_close(got[finite], exp[finite], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- determinism
def _fwd_bwd_twice(backend, device):
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        m = FusedLSTM(16, 32, num_layers=2, bidirectional=True, backend=backend).to(device)
        x = torch.randn(20, 8, 16, device=device, requires_grad=True)
        out, (h, c) = m(x)
        (out.square().sum() + h.sum() + c.sum()).backward()
        results.append([out, h, c, x.grad] + [p.grad for p in m.parameters()])
    return results


@pytest.mark.parametrize("backend,device", [("cpu", "cpu"), ("reference", "cpu"),
                                            pytest.param("cuda", "cuda", marks=requires_cuda),
                                            pytest.param("triton", "cuda", marks=requires_cuda)])
def test_forward_backward_bitwise_deterministic(backend, device):
    if rnnfused.backends.unavailable_reason(backend, device) is not None:
        pytest.skip(rnnfused.backends.unavailable_reason(backend, device))
    first, second = _fwd_bwd_twice(backend, device)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------- autocast
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls", [FusedLSTM, FusedGRU, FusedRNN], ids=["lstm", "gru", "rnn"])
def test_cpu_autocast_runs_in_the_autocast_dtype_with_float32_param_grads(cls, dtype):
    torch.manual_seed(0)
    m = cls(8, 16, 2)
    x = torch.randn(10, 4, 8)
    ref_out = m(x)[0]
    with torch.autocast("cpu", dtype=dtype):
        out, hidden = m(x)
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    assert out.dtype == dtype and all(s.dtype == dtype for s in states)
    out.float().square().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in m.parameters())
    tol = 2e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(out.float(), ref_out, atol=tol, rtol=tol)


def test_autocast_reaches_the_raw_ops_and_leaves_float64_alone():
    x = make_inputs(Case("gru"), dtype=torch.float32, requires_grad=False)
    kind = CELL_KINDS["gru"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op_for(kind)(*forward_args(kind, x))
        out64 = op_for(kind)(*forward_args(kind, make_inputs(Case("gru"), requires_grad=False)))
    assert out[0].dtype == torch.bfloat16
    assert out64[0].dtype == torch.float64


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_dtypes_like_nn_lstm(dtype):
    torch.manual_seed(0)
    ref = nn.LSTM(8, 16, 2).cuda()
    fused = FusedLSTM.from_module(ref)
    x = torch.randn(10, 4, 8, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        exp, (eh, ec) = ref(x)
        got, (gh, gc) = fused(x)
    assert (got.dtype, gh.dtype, gc.dtype) == (exp.dtype, eh.dtype, ec.dtype)
    got.float().sum().backward()
    exp.float().sum().backward()
    for p, q in zip(fused.parameters(), ref.parameters()):
        assert p.grad.dtype == q.grad.dtype


# ------------------------------------------------------------------------------------------ double backward
@pytest.mark.parametrize("cls", [FusedLSTM, FusedGRU, FusedRNN], ids=["lstm", "gru", "rnn"])
def test_module_gradgradcheck_cpu_backend(cls):
    torch.manual_seed(0)
    m = cls(2, 3, 2, bidirectional=True, backend="cpu").double()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def fn(x, *params):
        out, hidden = torch.func.functional_call(m, dict(zip(names, params)), (x,))
        return (out,) + (hidden if isinstance(hidden, tuple) else (hidden,))

    # fast_mode (random projections of the second derivative: any wrong entry fails it w.p. 1): the full check took
    # ~2 min of CI for the LSTM.
    assert torch.autograd.gradgradcheck(fn, [x] + list(m.parameters()), eps=1e-6, atol=1e-6, rtol=1e-4,
                                        fast_mode=True)


def test_gradient_penalty_training_step_matches_reference_backend():
    """create_graph=True through the fused backend equals the same computation on the reference backend."""
    results = []
    for backend in ("cpu", "reference"):
        torch.manual_seed(0)
        m = FusedGRU(4, 6, backend=backend).double()
        x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
        out = m(x)[0]
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        gx.square().sum().backward()
        results.append([p.grad for p in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


# ------------------------------------------------------------------------------------------- export, compile
class _Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = FusedLSTM(I, H, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * H, 3)

    def forward(self, x):
        out, (h, c) = self.rnn(x)
        return self.head(out[:, -1]) + h.sum(0).sum(-1, keepdim=True) * 0.1


def test_torch_export_program_runs_and_matches():
    torch.manual_seed(0)
    model = _Classifier().eval()
    x = torch.randn(B, T, I)
    program = torch.export.export(model, (x,))
    assert any("rnnfused" in str(n.target) for n in program.graph.nodes), "the fused op must be in the graph"
    y = torch.randn(B, T, I)
    torch.testing.assert_close(program.module()(y), model(y))


def test_torch_compile_training_step_without_graph_breaks():
    torch.manual_seed(0)
    model = _Classifier()
    eager = _Classifier()
    eager.load_state_dict(model.state_dict())
    x, y = torch.randn(B, T, I), torch.tensor([0, 2, 1])

    def loss_fn(m, x, y):
        return nn.functional.cross_entropy(m(x), y)

    compiled = torch.compile(loss_fn, fullgraph=True)
    for m, fn in ((model, compiled), (eager, loss_fn)):
        fn(m, x, y).backward()
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)


# -------------------------------------------------------------------------------------------- large and long
def _saved_bytes(steps, cell="lstm"):
    """Bytes autograd keeps for backward for a 1-layer fused layer over `steps` steps."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    m = {"lstm": FusedLSTM, "gru": FusedGRU, "rnn": FusedRNN}[cell](8, 16)
    x = torch.randn(steps, 4, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = m(x)
    return total


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_memory_kept_for_backward_is_linear_in_seq_len(cell):
    b1, b2, b4 = _saved_bytes(100, cell), _saved_bytes(200, cell), _saved_bytes(400, cell)
    # Exactly affine in T: equal increments, and the per-step part dominates.
    assert b4 - b2 == 2 * (b2 - b1)
    assert (b2 - b1) > 0.9 * b1


@requires_cuda
def test_64bit_indexing_beyond_2_31_elements_on_gpu():
    """B·T·4H > 2^31: element offsets in the gate buffers pass int32. Batch rows are independent, so the last
    rows of the big run (the largest offsets) must equal a run of just those rows."""
    steps, batch, hidden = 4100, 512, 256  # 4100·512·4·256 = 2.15e9 > 2^31
    torch.manual_seed(0)
    m = FusedLSTM(8, hidden, backend="cuda").cuda().to(torch.bfloat16)
    x = torch.randn(steps, batch, 8, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    out, (h, c) = m(x)
    out[:, -2:].float().sum().backward()
    tail = x.detach()[:, -2:].clone().requires_grad_()
    out_tail, (h_tail, c_tail) = m(tail)
    torch.testing.assert_close(out[:, -2:], out_tail, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(c[:, -2:], c_tail, atol=2e-2, rtol=2e-2)
    out_tail.float().sum().backward()
    torch.testing.assert_close(x.grad[:, -2:], tail.grad, atol=2e-2, rtol=2e-2)


# ----------------------------------------------------------------------------------------------- CUDA graphs
@requires_cuda
def test_cuda_graph_captures_a_full_training_step():
    """forward + backward + optimizer step of a FusedLSTM model in one torch.cuda.graph, replayed = eager."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"rnn": FusedLSTM(8, 32, num_layers=2, backend="cuda"), "head": nn.Linear(32, 4)}).cuda()
    eager = nn.ModuleDict({"rnn": FusedLSTM(8, 32, num_layers=2, backend="cuda"), "head": nn.Linear(32, 4)}).cuda()
    eager.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.1)
    static_x = torch.randn(12, 16, 8, device="cuda")
    static_y = torch.randint(0, 4, (16,), device="cuda")

    def step(m, o, x, y):
        o.zero_grad(set_to_none=False)
        out, _ = m["rnn"](x)
        loss = nn.functional.cross_entropy(m["head"](out[-1]), y)
        loss.backward()
        o.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as the CUDA-graph docs require
        for _ in range(3):
            step(model, opt, static_x, static_y)
            step(eager, opt_eager, static_x, static_y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step(model, opt, static_x, static_y)
    for _ in range(3):
        x, y = torch.randn_like(static_x), torch.randint(0, 4, (16,), device="cuda")
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        loss = step(eager, opt_eager, x, y)
        torch.testing.assert_close(static_loss, loss, atol=1e-5, rtol=1e-5)
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
