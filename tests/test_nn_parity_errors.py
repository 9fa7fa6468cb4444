"""The drop-in is exact for the cells and the zero-size cases too: a fused module or cell gives nn.*'s results for every
zero-size input nn.* accepts, and raises nn.*'s exception class AND message for every error that nn.* checks for
itself (code that matches those messages keeps working). Errors nn.* only hits deep inside its kernels (dtype or
device mismatches) keep rnnfused's clearer messages; tests/test_hardening.py checks their classes."""
import pytest
import torch
from torch import nn

from rnnfused import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell

from helpers import raised

CELLS = {"LSTMCell": (nn.LSTMCell, FusedLSTMCell), "GRUCell": (nn.GRUCell, FusedGRUCell),
         "RNNCell": (nn.RNNCell, FusedRNNCell)}
MODULES = {"LSTM": (nn.LSTM, FusedLSTM), "GRU": (nn.GRU, FusedGRU), "RNN": (nn.RNN, FusedRNN)}
I, H, B, T = 4, 5, 3, 6


def _pair(classes, *args, **kwargs):
    """nn.* and fused instances with the same float64 weights."""
    torch_cls, fused_cls = classes
    torch.manual_seed(0)
    ref = torch_cls(*args, **kwargs, dtype=torch.float64)
    return ref, fused_cls.from_module(ref)


def _assert_same_error(ref_call, fused_call):
    exp, got = raised(ref_call), raised(fused_call)
    assert exp is not None, "the case must be an error for nn.*"
    assert got is not None, f"nn raised {type(exp).__name__}: {exp}; the fused one accepted the input"
    assert (type(got), str(got)) == (type(exp), str(exp))


def _flat(result):
    return list(result) if isinstance(result, tuple) else [result]


# --------------------------------------------------------------------------------------------- zero sizes: cells
CELL_ZERO_SIZES = {  # name: (input_size, hidden_size, input shape)
    "hidden_size=0": (I, 0, (B, I)),
    "input_size=0": (0, H, (B, 0)),
    "batch=0": (I, H, (0, I)),
    "batch=0,hidden_size=0": (I, 0, (0, I)),
    "unbatched,hidden_size=0": (I, 0, (I,)),
    "unbatched,input_size=0": (0, H, (0,)),
}


@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
@pytest.mark.parametrize("case", list(CELL_ZERO_SIZES))
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_zero_sizes_give_nn_results_and_gradients(name, case, with_hx):
    in_size, hidden, shape = CELL_ZERO_SIZES[case]
    ref, fused = _pair(CELLS[name], in_size, hidden)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = None
    if with_hx:
        state_shape = (shape[0], hidden) if len(shape) == 2 else (hidden,)
        h = torch.randn(state_shape, dtype=torch.float64, requires_grad=True)
        hx = (h, torch.randn(state_shape, dtype=torch.float64, requires_grad=True)) if name == "LSTMCell" else h
    exp, got = _flat(ref(x, hx)), _flat(fused(x, hx))
    for e, g in zip(exp, got):
        assert (g.shape, g.dtype) == (e.shape, e.dtype)
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    leaves = [x] + ([t for t in _flat(hx)] if with_hx else []) + list(fused.parameters())
    ref_leaves = [x] + ([t for t in _flat(hx)] if with_hx else []) + list(ref.parameters())
    upstream = [torch.randn_like(e) for e in exp]
    g_exp = torch.autograd.grad(exp, ref_leaves, upstream, allow_unused=True)
    g_got = torch.autograd.grad(got, leaves, upstream, allow_unused=True)
    for e, g in zip(g_exp, g_got):
        e = torch.zeros(()) if e is None else e
        g = torch.zeros(()) if g is None else g
        torch.testing.assert_close(g.expand_as(e) if g.dim() == 0 else g, e, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------- zero sizes: modules
@pytest.mark.parametrize("ctor", [dict(input_size=I, hidden_size=0), dict(input_size=0, hidden_size=H),
                                  dict(input_size=I, hidden_size=H, num_layers=0)],
                         ids=["hidden_size=0", "input_size=0", "num_layers=0"])
@pytest.mark.parametrize("name", list(MODULES))
def test_module_zero_size_constructors_raise_like_nn(name, ctor):
    torch_cls, fused_cls = MODULES[name]
    _assert_same_error(lambda: torch_cls(**ctor), lambda: fused_cls(**ctor))


@pytest.mark.parametrize("name", list(MODULES))
def test_module_empty_batch_gives_nn_results(name):
    ref, fused = _pair(MODULES[name], I, H, 2, bidirectional=True)
    x = torch.randn(T, 0, I, dtype=torch.float64)
    for e, g in zip(_flat(ref(x)), _flat(fused(x))):
        for e_t, g_t in zip(_flat(e), _flat(g)):
            assert (g_t.shape, g_t.dtype) == (e_t.shape, e_t.dtype)


# ---------------------------------------------------------------------------------------- errors: cells
def _cell_states(name, h_shape, c_shape=None):
    h = torch.zeros(h_shape, dtype=torch.float64)
    if name != "LSTMCell":
        return h
    return h, torch.zeros(c_shape or h_shape, dtype=torch.float64)


CELL_ERRORS = {  # name: (input shape, lambda cell name -> hx)
    "input_size": ((B, I + 2), lambda n: _cell_states(n, (B, H))),
    "hidden batch": ((B, I), lambda n: _cell_states(n, (B + 1, H), (B, H))),
    "hidden size": ((B, I), lambda n: _cell_states(n, (B, H + 1), (B, H))),
    "cell-state batch": ((B, I), lambda n: _cell_states(n, (B, H), (B + 2, H))),
    "cell-state size": ((B, I), lambda n: _cell_states(n, (B, H), (B, H + 2))),
    "3-D input": ((1, B, I), lambda n: _cell_states(n, (B, H))),
    "3-D hidden": ((B, I), lambda n: _cell_states(n, (1, B, H))),
    "unbatched input, batched hidden": ((I,), lambda n: _cell_states(n, (B, H))),
    "batched input, unbatched hidden": ((B, I), lambda n: _cell_states(n, (H,))),
    "hx not a tuple (LSTMCell)": ((B, I), lambda n: torch.zeros(B, H, dtype=torch.float64)),
}


@pytest.mark.parametrize("case", list(CELL_ERRORS))
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_errors_have_nn_class_and_text(name, case):
    shape, make_hx = CELL_ERRORS[case]
    if case.startswith("cell-state") and name != "LSTMCell":
        pytest.skip("no cell state")
    if case.endswith("(LSTMCell)") and name != "LSTMCell":
        pytest.skip("a tensor hx is right for this cell")
    ref, fused = _pair(CELLS[name], I, H)
    x = torch.zeros(shape, dtype=torch.float64)
    hx = make_hx(name)
    _assert_same_error(lambda: ref(x, hx), lambda: fused(x, hx))


def test_cell_with_unknown_nonlinearity_fails_in_forward_like_nn():
    # nn.RNNCell accepts any nonlinearity string and fails when called.
    ref, fused = nn.RNNCell(I, H, nonlinearity="gelu"), FusedRNNCell(I, H, nonlinearity="gelu")
    x = torch.zeros(B, I)
    _assert_same_error(lambda: ref(x), lambda: fused(x))


# -------------------------------------------------------------------------------------- errors: sequence modules
def _module_hx(name, shape, c_shape=None):
    h = torch.zeros(shape, dtype=torch.float64)
    return (h, torch.zeros(c_shape or shape, dtype=torch.float64)) if name == "LSTM" else h


MODULE_ERRORS = {  # name: (input shape, lambda module name -> hx or None)
    "input_size": ((T, B, I + 1), lambda n: None),
    "4-D input": ((1, T, B, I), lambda n: None),
    "seq_len=0": ((0, B, I), lambda n: None),
    "hidden batch": ((T, B, I), lambda n: _module_hx(n, (1, B + 1, H))),
    "hidden layers": ((T, B, I), lambda n: _module_hx(n, (2, B, H))),
    "hidden size": ((T, B, I), lambda n: _module_hx(n, (1, B, H + 1))),
    "2-D hidden, batched input": ((T, B, I), lambda n: _module_hx(n, (B, H))),
    "3-D hidden, unbatched input": ((T, I), lambda n: _module_hx(n, (1, B, H))),
    "cell-state size (LSTM)": ((T, B, I), lambda n: _module_hx(n, (1, B, H), (1, B, H + 1))),
}


@pytest.mark.parametrize("case", list(MODULE_ERRORS))
@pytest.mark.parametrize("name", list(MODULES))
def test_module_errors_have_nn_class_and_text(name, case):
    if case.endswith("(LSTM)") and name != "LSTM":
        pytest.skip("no cell state")
    shape, make_hx = MODULE_ERRORS[case]
    ref, fused = _pair(MODULES[name], I, H)
    x = torch.zeros(shape, dtype=torch.float64)
    hx = make_hx(name)
    _assert_same_error(lambda: ref(x, hx), lambda: fused(x, hx))


MODULE_CONSTRUCTOR_ERRORS = {
    "proj_size on a GRU": ("GRU", dict(proj_size=2)),
    "proj_size >= hidden_size": ("LSTM", dict(proj_size=H)),
    "negative proj_size": ("LSTM", dict(proj_size=-1)),
    "dropout > 1": ("GRU", dict(dropout=1.5)),
    "bad nonlinearity": ("RNN", dict(nonlinearity="gelu")),
}


@pytest.mark.parametrize("case", list(MODULE_CONSTRUCTOR_ERRORS))
def test_module_constructor_errors_have_nn_class_and_text(case):
    name, kwargs = MODULE_CONSTRUCTOR_ERRORS[case]
    torch_cls, fused_cls = MODULES[name]
    _assert_same_error(lambda: torch_cls(I, H, **kwargs), lambda: fused_cls(I, H, **kwargs))
