"""The raw custom ops: registration, torch.library.opcheck, torch.compile, double backward and input validation."""
import pytest
import torch

import rnnfused
from rnnfused import functional as F
from rnnfused._inputs import forward_args
from rnnfused._op_family import op_for

from helpers import CELLS, Case, make_inputs, run_backend, tensor_fields

OP_NAMES = ["lstm", "lstm_backward", "gru", "gru_backward", "rnn_tanh", "rnn_tanh_backward", "rnn_relu",
            "rnn_relu_backward"]


def test_extension_loads_and_lists_ops():
    assert rnnfused.extension_loaded(), rnnfused.EXTENSION_ERROR
    for name in OP_NAMES:
        assert hasattr(torch.ops.rnnfused, name), name


OPCHECK_CASES = [Case(c) for c in CELLS] + [
    Case("lstm", proj=3, lengths=(5, 1, 3), reverse=True), Case("gru", lengths=(2, 5, 5), bias=False)]


@pytest.mark.parametrize("case", OPCHECK_CASES, ids=lambda c: c.id)
def test_opcheck_forward_and_backward_ops(case):
    x = make_inputs(case)
    fwd = op_for(case.kind)
    torch.library.opcheck(fwd, forward_args(case.kind, x))
    outs = fwd(*forward_args(case.kind, x))
    # The backward op, called as the autograd formula calls it.
    output, h_n = outs[0].detach(), outs[1].detach()
    g = [torch.randn_like(output), torch.randn_like(h_n)]
    d = lambda t: None if t is None else t.detach()  # noqa: E731
    if case.kind.has_cell_state:
        args = (g[0], g[1], torch.randn_like(outs[2]), d(x.input), d(x.h0), d(x.c0), d(x.w_ih), d(x.w_hh), d(x.w_hr),
                x.lengths, x.reverse, output, outs[3], outs[4])
    else:
        extra = (outs[2],) if case.kind.saved_per_unit else ()
        args = (g[0], g[1], d(x.input), d(x.h0), d(x.w_ih), d(x.w_hh), x.lengths, x.reverse, output) + extra
    torch.library.opcheck(getattr(torch.ops.rnnfused, f"{case.kind.name}_backward").default, args)


@pytest.mark.parametrize("cell", CELLS)
def test_torch_compile_fullgraph_matches_eager(cell):
    case = Case(cell, proj=2 if cell == "lstm" else 0, lengths=(5, 3, 4))
    x = make_inputs(case, dtype=torch.float32)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cpu")

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    tensors = [t for _, t in tensor_fields(x)]
    eager_out, compiled_out = fn(*tensors), compiled(*tensors)
    for a, b in zip(compiled_out, eager_out):
        torch.testing.assert_close(a, b)
    g_eager = torch.autograd.grad(sum(o.sum() for o in eager_out), tensors)
    g_comp = torch.autograd.grad(sum(o.sum() for o in compiled_out), tensors)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", [Case(c, B=2, T=3, I=2, H=3) for c in CELLS] +
                         [Case("lstm", B=2, T=3, I=2, H=3, proj=2, lengths=(3, 1), reverse=True)], ids=lambda c: c.id)
def test_gradgradcheck_cpu_backend(case):
    x = make_inputs(case)
    names = [n for n, _ in tensor_fields(x)]

    def fn(*tensors):
        return run_backend(case.kind, x._replace(**dict(zip(names, tensors))), "cpu")

    assert torch.autograd.gradgradcheck(fn, [t for _, t in tensor_fields(x)], eps=1e-6, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------- bad input
def _lstm_args(**over):
    x = make_inputs(Case("lstm", B=2, T=3, I=4, H=5), requires_grad=False)
    return x._replace(**over)


BAD = [
    ("input rank", dict(input=torch.randn(3, 4, dtype=torch.float64)), "input"),
    ("input feature size", dict(input=torch.randn(3, 2, 7, dtype=torch.float64)), "w_ih"),
    ("h0 shape", dict(h0=torch.randn(3, 5, dtype=torch.float64)), "h0"),
    ("c0 shape", dict(c0=torch.randn(2, 4, dtype=torch.float64)), "c0"),
    ("h0 dtype", dict(h0=torch.randn(2, 5, dtype=torch.float32)), "h0"),
    ("w_hh shape", dict(w_hh=torch.randn(20, 3, dtype=torch.float64)), "w_hr"),
    ("b_ih shape", dict(b_ih=torch.randn(7, dtype=torch.float64)), "b_ih"),
    ("only one bias", dict(b_hh=None), "b_ih and b_hh"),
    ("T=0", dict(input=torch.randn(0, 2, 4, dtype=torch.float64)), "seq_len"),
    ("B=0", dict(input=torch.randn(3, 0, 4, dtype=torch.float64), h0=torch.randn(0, 5, dtype=torch.float64),
                 c0=torch.randn(0, 5, dtype=torch.float64)), "batch"),
    ("integer input", dict(input=torch.ones(3, 2, 4, dtype=torch.int64)), "floating"),
    ("lengths too long", dict(lengths=torch.tensor([4, 1])), "lengths"),
    ("lengths zero", dict(lengths=torch.tensor([0, 1])), "lengths"),
    ("lengths wrong size", dict(lengths=torch.tensor([3, 2, 1])), "lengths"),
]


@pytest.mark.parametrize("what,over,name", BAD, ids=[b[0] for b in BAD])
def test_raw_op_rejects_bad_input(what, over, name):
    x = _lstm_args(**over)
    with pytest.raises(RuntimeError, match=name):
        op_for(rnnfused._cells.CELL_KINDS["lstm"])(*forward_args(rnnfused._cells.CELL_KINDS["lstm"], x))


@pytest.mark.parametrize("what,over,name", BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_functional_rejects_bad_input(what, over, name, backend):
    x = _lstm_args(**over)
    with pytest.raises((ValueError, RuntimeError), match=name):
        F.lstm(x.input, (x.h0, x.c0), x.w_ih, x.w_hh, x.b_ih, x.b_hh, x.w_hr, lengths=x.lengths, backend=backend)


# ------------------------------------------------------------------------------------- lengths on the device
def test_cpp_lengths_on_the_inputs_device_are_accepted_without_reading_them():
    """rnnfused._C._checked_lengths is the ops' own check (csrc/sequence/layer_args.cpp). meta stands in for a GPU:
    lengths already on the input's device are returned as they are — never read (no GPU sync, capturable) — while
    CPU lengths are value-checked and moved to the input's device."""
    check = rnnfused._extension.extension()._checked_lengths
    meta_input = torch.empty(5, 3, 4, device="meta")
    on_device = torch.empty(3, dtype=torch.int64, device="meta")  # values unknowable: any would pass
    assert check(on_device, meta_input) is not None and check(on_device, meta_input).device.type == "meta"
    moved = check(torch.tensor([5, 1, 2]), meta_input)
    assert moved.device.type == "meta" and moved.shape == (3,)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, seq_len=5\], got values in \[0, 5\]"):
        check(torch.tensor([5, 0, 2]), meta_input)
    cpu_input = torch.empty(5, 3, 4)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, seq_len=5\]"):  # the input's device is the CPU
        check(torch.tensor([6, 1, 2]), cpu_input)
    with pytest.raises(RuntimeError, match="lengths must be on the CPU .* or on cpu like input, got meta"):
        check(on_device, cpu_input)
    with pytest.raises(RuntimeError, match="lengths must have dtype int64"):
        check(torch.empty(3, dtype=torch.int32, device="meta"), meta_input)
    with pytest.raises(RuntimeError, match=r"lengths must have shape \[3\]"):
        check(torch.empty(4, dtype=torch.int64, device="meta"), meta_input)


def test_lengths_on_a_third_device_are_an_error_not_a_silent_fake_result():
    """CPU input with meta lengths dispatches to the Meta kernel (the fake function): it must refuse, not return
    empty outputs as if the op had run."""
    x = _lstm_args(lengths=torch.empty(2, dtype=torch.int64, device="meta"))
    with pytest.raises(RuntimeError, match="lengths must be on the CPU or on cpu like input, got meta"):
        op_for(rnnfused._cells.CELL_KINDS["lstm"])(*forward_args(rnnfused._cells.CELL_KINDS["lstm"], x))


def test_backward_op_rejects_mismatched_saved_tensors():
    x = _lstm_args()
    outs = op_for(rnnfused._cells.CELL_KINDS["lstm"])(*forward_args(rnnfused._cells.CELL_KINDS["lstm"], x))
    g = torch.zeros_like(outs[0])
    with pytest.raises(RuntimeError, match="saved"):
        torch.ops.rnnfused.lstm_backward(g, torch.zeros_like(outs[1]), torch.zeros_like(outs[2]), x.input, x.h0, x.c0,
                                         x.w_ih, x.w_hh, None, None, False, outs[0], outs[3][:, :1], outs[4])


def test_torch_compile_inductor_functional_lstm():
    """The public functional API under the default (inductor) compiler, forward and backward, no graph breaks."""
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4, requires_grad=True)  # [B, T, I]
    w_ih, w_hh = torch.randn(20, 4, requires_grad=True), torch.randn(20, 5, requires_grad=True)
    b_ih, b_hh = torch.randn(20, requires_grad=True), torch.randn(20, requires_grad=True)

    def step(x, w_ih, w_hh, b_ih, b_hh):
        out, (h, c) = F.lstm(x, None, w_ih, w_hh, b_ih, b_hh, batch_first=True, lengths=[6, 2, 4])
        return (out.tanh().sum() + h.sum() + c.sum())

    args = (x, w_ih, w_hh, b_ih, b_hh)
    compiled = torch.compile(step, fullgraph=True)
    loss_c = compiled(*args)
    g_c = torch.autograd.grad(loss_c, args)
    loss_e = step(*args)
    g_e = torch.autograd.grad(loss_e, args)
    torch.testing.assert_close(loss_c, loss_e)
    for a, b in zip(g_c, g_e):
        torch.testing.assert_close(a, b)
