"""The eager cell step of the cpu backend (rnnfused._C._cpu_cell_step_<cell>, csrc/cell/cell_step_eager.h): a plain
C++ function with its own C++ autograd node that Fused*Cell loops run instead of the op. It must equal the op
bitwise (forward and every gradient), give float64-exact first and second derivatives, ask for only the gradients
autograd needs, and hand the call to the op wherever something must see an op (a TorchDispatchMode)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rnnfused import FusedGRUCell, FusedLSTMCell, FusedRNNCell
from rnnfused import _cell_ops
from rnnfused._cell_ops import _CPU_EAGER_STEPS, cell_forward_args, cell_op, cell_output_names
from rnnfused._cells import CELL_KINDS

KINDS = list(CELL_KINDS)
CELLS = {"lstm": (FusedLSTMCell, {}), "gru": (FusedGRUCell, {}), "rnn_tanh": (FusedRNNCell, {"nonlinearity": "tanh"}),
         "rnn_relu": (FusedRNNCell, {"nonlinearity": "relu"})}
ARG_NAMES = ("input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh")


def make_args(kind_name, B=3, I=4, H=5, dtype=torch.float64, bias=True, requires_grad=True, seed=0):
    """(input, hx, cx, w_ih, w_hh, b_ih, b_hh), cx/biases None where absent."""
    kind = CELL_KINDS[kind_name]
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        t = ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    GH, s = kind.gates * H, H ** -0.5
    return (rand(B, I), rand(B, H), rand(B, H) if kind.has_cell_state else None, rand(GH, I, scale=s),
            rand(GH, H, scale=s), rand(GH, scale=s) if bias else None, rand(GH, scale=s) if bias else None)


def eager(kind_name, args):
    """(h', c' or None) of the eager C++ step."""
    out = _CPU_EAGER_STEPS[kind_name](*args)
    assert out, "the eager step handed the call back to the op"
    return out[0], (out[1] if CELL_KINDS[kind_name].has_cell_state else None)


def through_op(kind_name, args):
    """(h', c' or None) of the dispatcher op with its Python autograd."""
    kind = CELL_KINDS[kind_name]
    out = cell_op(kind)(*cell_forward_args(kind, *args))
    out = dict(zip(cell_output_names(kind), out if isinstance(out, tuple) else (out,)))
    return out["h"], out.get("c")


def loss_of(h, c, gh, gc):
    return (h * gh).sum() + (0 if c is None else (c * gc).sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_eager_step_equals_the_op_bitwise(kind, bias, dtype):
    """Same math as the op (cell_forward/cell_backward): outputs and every gradient are bitwise equal."""
    args = make_args(kind, B=7, I=6, H=37, dtype=dtype, bias=bias)
    present = [t for t in args if t is not None]
    got, exp = eager(kind, args), through_op(kind, args)
    gh, gc = torch.randn_like(got[0]), torch.randn_like(got[0])
    for a, e in zip(got, exp):
        assert (a is None) == (e is None)
        if a is not None:
            assert torch.equal(a, e)
    grads_got = torch.autograd.grad(loss_of(*got, gh, gc), present)
    grads_exp = torch.autograd.grad(loss_of(*exp, gh, gc), present)
    for a, e in zip(grads_got, grads_exp):
        assert torch.equal(a, e)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_eager_step_gradcheck_and_gradgradcheck_float64(kind, bias):
    args = make_args(kind, B=2, I=3, H=4, bias=bias)
    present = tuple(t for t in args if t is not None)
    slots = [i for i, t in enumerate(args) if t is not None]

    def fn(*ts):
        full = list(args)
        for i, t in zip(slots, ts):
            full[i] = t
        h, c = eager(kind, full)
        return (h,) if c is None else (h, c)

    assert torch.autograd.gradcheck(fn, present)
    assert torch.autograd.gradgradcheck(fn, present)  # create_graph: the op's autograd recomputes the step


@pytest.mark.parametrize("kind", KINDS)
def test_eager_step_computes_only_the_gradients_autograd_asks_for(kind):
    """One argument requiring grad at a time: its gradient equals the all-gradients run's, the others stay None."""
    full = make_args(kind, dtype=torch.float64)
    h, c = eager(kind, full)
    gh, gc = torch.randn_like(h), torch.randn_like(h)
    expected = torch.autograd.grad(loss_of(h, c, gh, gc), [t for t in full if t is not None])
    expected = dict(zip([n for n, t in zip(ARG_NAMES, full) if t is not None], expected))
    for name in expected:
        args = [None if t is None else t.detach().requires_grad_(n == name) for n, t in zip(ARG_NAMES, full)]
        h, c = eager(kind, args)
        (got,) = torch.autograd.grad(loss_of(h, c, gh, gc), [args[ARG_NAMES.index(name)]])
        assert torch.equal(got, expected[name]), name


def test_lstm_eager_step_with_only_one_state_used():
    """An unused h' or c' reaches the C++ node as an undefined gradient (no materialized zeros)."""
    args = make_args("lstm")
    present = [t for t in args if t is not None]
    for use_h in (True, False):
        h, c = eager("lstm", args)
        h_ref, c_ref = through_op("lstm", args)
        got = torch.autograd.grad((h if use_h else c).square().sum(), present)
        exp = torch.autograd.grad((h_ref if use_h else c_ref).square().sum(), present)
        for a, e in zip(got, exp):
            assert torch.equal(a, e)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_modules_run_the_eager_step_on_the_cpu_backend(kind):
    module, extra = CELLS[kind]
    cell = module(4, 5, **extra, backend="cpu").double()
    x = torch.randn(3, 4, dtype=torch.float64)
    out = cell(x)
    h = out[0] if kind == "lstm" else out
    # a C++ node (the op's Python autograd would show as a BackwardCFunction of rnnfused_<cell>_cell)
    assert type(h.grad_fn).__name__ == "CppFunction", type(h.grad_fn)
    with torch.no_grad():
        out = cell(x)
    assert (out[0] if kind == "lstm" else out).grad_fn is None


class _RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kind", KINDS)
def test_dispatch_modes_see_the_op(kind):
    """Under a TorchDispatchMode the eager step hands the call back (empty result) and the module runs the op,
    which the mode sees as one call."""
    args = make_args(kind, requires_grad=False)
    with _RecordOps() as mode:
        assert _CPU_EAGER_STEPS[kind](*args) == []
    assert mode.names == []
    module, extra = CELLS[kind]
    cell = module(4, 5, **extra, backend="cpu").double()
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = cell(x)
    with _RecordOps() as mode:
        got = cell(x)
    assert f"rnnfused.{kind}_cell.default" in mode.names
    for a, e in zip(got if kind == "lstm" else (got,), expected if kind == "lstm" else (expected,)):
        assert torch.equal(a, e)


@pytest.mark.parametrize("kind", KINDS)
def test_tracing_and_autocast_see_the_op(kind):
    """Under JIT tracing and CPU autocast the eager step hands the call back (checked in C++), so the trace records
    the op and autocast's kernel casts."""
    args = make_args(kind, requires_grad=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _CPU_EAGER_STEPS[kind](*args) == []
    module, extra = CELLS[kind]
    cell = module(4, 5, **extra, backend="cpu").double()
    x = torch.randn(3, 4, dtype=torch.float64)
    traced = torch.jit.trace(cell, (x,), check_trace=False)
    assert f"rnnfused::{kind}_cell" in str(traced.graph)
    for a, e in zip(*(out if kind == "lstm" else (out,) for out in (traced(x), cell(x)))):
        assert torch.equal(a, e)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # (autocast casts float32, not float64)
        h = cell.float()(x.float())
    assert (h[0] if kind == "lstm" else h).dtype == torch.bfloat16


class _CountCalls:
    def __init__(self, fn, answer=None):
        self.fn, self.answer, self.calls = fn, answer, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args) if self.answer is None else self.answer


@pytest.mark.parametrize("kind", KINDS)
def test_module_common_case_is_one_cpp_call(kind, monkeypatch):
    """A plain cell's forward on CPU tensors is one call of _cpu_cell_step_module_<cell>, bitwise the general path's
    result, with and without initial states, with gradients."""
    module, extra = CELLS[kind]
    cell = module(4, 5, **extra, backend="cpu").double()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(3, 5, dtype=torch.float64, requires_grad=True) for _ in range(2 if kind == "lstm" else 1)]
    hx = tuple(states) if kind == "lstm" else states[0]
    as_list = lambda out: list(out) if kind == "lstm" else [out]  # noqa: E731
    counted = _CountCalls(_cell_ops._CPU_MODULE_FORWARDS[kind])
    monkeypatch.setitem(_cell_ops._CPU_MODULE_FORWARDS, kind, counted)
    fast = [as_list(cell(x, hx)), as_list(cell(x))]
    assert counted.calls == 2
    fast_grads = torch.autograd.grad(sum(o.sum() for o in fast[0]), [x, *states, *cell.parameters()])
    monkeypatch.setitem(_cell_ops._CPU_MODULE_FORWARDS, kind, _CountCalls(None, answer=[]))  # always declines
    general = [as_list(cell(x, hx)), as_list(cell(x))]
    general_grads = torch.autograd.grad(sum(o.sum() for o in general[0]), [x, *states, *cell.parameters()])
    for a, b in zip(sum(fast, []) + list(fast_grads), sum(general, []) + list(general_grads)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["unbatched", "wrong-input-size", "wrong-dtype-state", "backend-reference",
                                  "env-reference", "list-state"])
def test_module_uncommon_cases_take_the_general_path(case, monkeypatch):
    """Anything but the common case declines (C++ returns [] or Python does not call it): nn's results and errors."""
    cell = FusedLSTMCell(4, 5).double()
    ref = torch.nn.LSTMCell(4, 5).double()
    ref.load_state_dict(cell.state_dict())
    x, h, c = (torch.randn(3, n, dtype=torch.float64) for n in (4, 5, 5))
    counted = _CountCalls(_cell_ops._CPU_MODULE_FORWARDS["lstm"])
    monkeypatch.setitem(_cell_ops._CPU_MODULE_FORWARDS, "lstm", counted)
    if case == "unbatched":
        got, want = cell(x[0], (h[0], c[0])), ref(x[0], (h[0], c[0]))
    elif case == "wrong-input-size":
        with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 5 expected 4"):
            cell(h, (h, c))
        return
    elif case == "wrong-dtype-state":
        with pytest.raises(RuntimeError, match="hidden1"):
            cell(x, (h, c.float()))
        return
    elif case == "backend-reference":
        cell.backend = "reference"
        got, want = cell(x, (h, c)), ref(x, (h, c))
        assert counted.calls == 0
    elif case == "env-reference":
        monkeypatch.setenv("RNNFUSED_BACKEND", "reference")
        got, want = cell(x, (h, c)), ref(x, (h, c))
        assert counted.calls == 0
    else:
        got, want = cell(x, [h, c]), ref(x, (h, c))
        assert counted.calls == 0
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_layer_norm_cells_keep_their_own_step(monkeypatch):
    from rnnfused import FusedLayerNormLSTMCell

    counted = _CountCalls(_cell_ops._CPU_MODULE_FORWARDS["lstm"])
    monkeypatch.setitem(_cell_ops._CPU_MODULE_FORWARDS, "lstm", counted)
    cell = FusedLayerNormLSTMCell(4, 5).double()
    cell(torch.randn(3, 4, dtype=torch.float64))
    assert counted.calls == 0


@pytest.mark.parametrize("kind", KINDS)
def test_eager_step_rejects_bad_input_naming_the_argument(kind):
    args = list(make_args(kind, requires_grad=False))
    bad = list(args)
    bad[ARG_NAMES.index("w_hh")] = args[ARG_NAMES.index("w_hh")][:, :-1]
    with pytest.raises(RuntimeError, match="w_hh"):
        _CPU_EAGER_STEPS[kind](*bad)
    bad = list(args)
    bad[ARG_NAMES.index("hx")] = args[ARG_NAMES.index("hx")].float()
    with pytest.raises(RuntimeError, match="hx"):
        _CPU_EAGER_STEPS[kind](*bad)
    bad = list(args)
    bad[ARG_NAMES.index("b_hh")] = None
    with pytest.raises(RuntimeError, match="b_ih and b_hh"):
        _CPU_EAGER_STEPS[kind](*bad)
