"""The single-step cell ops (rnnfused::<cell>_cell and <cell>_cell_backward for every cell) and the Fused*Cell
modules on them: opcheck, float64 gradcheck, parity with nn.*Cell (outputs and gradients), the gradients autograd
leaves out, bad input, autocast, torch.compile of a cell loop, and the CUDA ops on a GPU."""
import pytest
import torch
from torch import nn

from rnnfused import FusedGRUCell, FusedLSTMCell, FusedRNNCell
from rnnfused._cell_ops import (cell_backward_arg_names, cell_backward_op, cell_forward_args, cell_op,
                                cell_output_names, reference_cell)
from rnnfused._cells import CELL_KINDS

from helpers import requires_cuda

KINDS = list(CELL_KINDS)  # lstm, gru, rnn_tanh, rnn_relu
MODULES = {"lstm": (FusedLSTMCell, nn.LSTMCell, {}), "gru": (FusedGRUCell, nn.GRUCell, {}),
           "rnn_tanh": (FusedRNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
           "rnn_relu": (FusedRNNCell, nn.RNNCell, {"nonlinearity": "relu"})}
SHAPES = [(3, 4, 5), (1, 1, 1), (2, 7, 37), (5, 6, 19)]  # (B, I, H); B >= 4: the fused CPU matmul in backward
GRAD_SHAPES = [(3, 4, 5), (1, 1, 1), (2, 3, 11), (4, 3, 6)]  # gradcheck perturbs every weight: small sizes


def _id(shape):
    return "B{}-I{}-H{}".format(*shape)


def make_args(kind_name, B, I, H, dtype=torch.float64, device="cpu", bias=True, requires_grad=True, seed=0):
    """(input, hx, cx, w_ih, w_hh, b_ih, b_hh) with uniform(-1, 1) values (weights scaled by 1/sqrt(H))."""
    kind = CELL_KINDS[kind_name]
    g = torch.Generator().manual_seed(seed)
    s = H ** -0.5

    def rand(*shape, scale=1.0):
        t = (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
        return t.to(device=device, dtype=dtype).requires_grad_(requires_grad)

    GH = kind.gates * H
    return (rand(B, I), rand(B, H), rand(B, H) if kind.has_cell_state else None, rand(GH, I, scale=s),
            rand(GH, H, scale=s), rand(GH, scale=s) if bias else None, rand(GH, scale=s) if bias else None)


def run_op(kind_name, args):
    """(h', c') of the cell op, c' None without a cell state."""
    kind = CELL_KINDS[kind_name]
    out = cell_op(kind)(*cell_forward_args(kind, *args))
    out = dict(zip(cell_output_names(kind), out if isinstance(out, tuple) else (out,)))
    return out["h"], out.get("c")


# -------------------------------------------------------------------------------------------------- the raw ops
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("kind", KINDS)
def test_opcheck_forward_and_backward_ops(kind, shape, bias):
    args = make_args(kind, *shape, bias=bias)
    k = CELL_KINDS[kind]
    torch.library.opcheck(cell_op(k), cell_forward_args(k, *args))
    # The backward op with the tensors the forward saves, and a mask that leaves some gradients out.
    plain = [a.detach() if a is not None else None for a in args]
    out = cell_op(k)(*cell_forward_args(k, *plain))
    values = dict(zip(["input", "hx", "cx", "w_ih", "w_hh"], plain[:5]))
    values.update(zip(cell_output_names(k), out if isinstance(out, tuple) else (out,)))
    values.update(grad_h=torch.randn_like(values["hx"]), grad_c=torch.randn_like(values["hx"]))
    for mask in ([True, True, True, bias], [False, True, False, False]):
        values["output_mask"] = mask
        torch.library.opcheck(cell_backward_op(k), tuple(values[n] for n in cell_backward_arg_names(k)))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=_id)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind, shape, bias):
    args = make_args(kind, *shape, bias=bias)
    present = [a for a in args if a is not None]

    def fn(*ts):
        it = iter(ts)
        full = [next(it) if a is not None else None for a in args]
        h, c = run_op(kind, full)
        return (h, c) if c is not None else (h,)

    assert torch.autograd.gradcheck(fn, present, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_gradgradcheck_through_the_reference(kind):
    args = make_args(kind, 2, 3, 4)
    present = [a for a in args if a is not None]

    def fn(*ts):
        it = iter(ts)
        h, c = run_op(kind, [next(it) if a is not None else None for a in args])
        return (h, c) if c is not None else (h,)

    assert torch.autograd.gradgradcheck(fn, present, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_op_matches_reference_equations_float32(kind):
    args = make_args(kind, 5, 6, 33, dtype=torch.float32)
    exp = reference_cell(CELL_KINDS[kind], *args)
    got = [t for t in run_op(kind, args) if t is not None]
    up = [torch.randn_like(e) for e in exp]
    present = [a for a in args if a is not None]
    ge, gg = torch.autograd.grad(exp, present, up), torch.autograd.grad(got, present, up)
    for name, a, e in zip(["h", "c"] + [f"grad{i}" for i in range(len(present))], got + list(gg), list(exp) + list(ge)):
        torch.testing.assert_close(a, e, atol=2e-5, rtol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_gradients_autograd_asks_for(kind):
    """input and the states without requires_grad (a teacher-forced decoder's first step); c' unused. B = 5: the
    fused CPU matmul computes the weight gradients alone."""
    args = make_args(kind, 5, 4, 5)
    input, hx, cx = (a.detach() if a is not None else None for a in args[:3])
    args = (input, hx, cx) + args[3:]
    h, _ = run_op(kind, args)
    weights = [a for a in args[3:] if a is not None]
    up = torch.randn_like(h)
    got = torch.autograd.grad(h, weights, up)
    exp = torch.autograd.grad(reference_cell(CELL_KINDS[kind], *args)[0], weights, up)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_raw_ops_reject_bad_input_naming_the_argument(kind):
    k = CELL_KINDS[kind]
    args = list(make_args(kind, 3, 4, 5, requires_grad=False))
    cases = {"w_ih": (3, torch.randn(k.gates * 5, 9, dtype=torch.float64)),
             "hx": (1, torch.randn(2, 5, dtype=torch.float64)),
             "input": (0, torch.randn(3, 4, 1, dtype=torch.float64)),
             "b_hh": (6, torch.randn(k.gates * 5, dtype=torch.float32))}
    for name, (pos, bad) in cases.items():
        broken = list(args)
        broken[pos] = bad
        with pytest.raises(RuntimeError, match=name):
            cell_op(k)(*cell_forward_args(k, *broken))


# ---------------------------------------------------------------------------------------------- the modules
def make_modules(kind, bias=True, dtype=torch.float64, I=4, H=6):
    fcls, tcls, kw = MODULES[kind]
    torch.manual_seed(0)
    ref = tcls(I, H, bias, **kw).to(dtype)
    return ref, fcls.from_module(ref)


def _assert_cell_op_matches_nn(kind, ref, fused, x, hx):
    """fused(x, hx) ran the single-step op (its autograd node, not the sequence op with T = 1) and equals ref(x, hx)
    in float64: outputs and the gradients of input, states and every parameter."""
    exp, got = ref(x, hx), fused(x, hx)
    exp = exp if isinstance(exp, tuple) else (exp,)
    got = got if isinstance(got, tuple) else (got,)
    node = type(got[0].grad_fn).__name__
    # the cpu backend's eager C++ step (a CppFunction: tests/test_cell_step_eager.py) or the op's autograd.Function
    assert node == "CppFunction" or f"rnnfused_{kind}_cell" in node, node
    leaves = [x] + (list(hx) if isinstance(hx, tuple) else [hx])
    up = [torch.randn_like(e) for e in exp]
    ge = torch.autograd.grad(exp, leaves + list(ref.parameters()), up)
    gg = torch.autograd.grad(got, leaves + list(fused.parameters()), up)
    for a, e in zip(list(got) + list(gg), list(exp) + list(ge)):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_cells_match_nn_cells_float64_through_the_cell_op(kind, bias):
    ref, fused = make_modules(kind, bias)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    hx = (h, torch.randn(3, 6, dtype=torch.float64, requires_grad=True)) if kind == "lstm" else h
    _assert_cell_op_matches_nn(kind, ref, fused, x, hx)


@pytest.mark.parametrize("kind", KINDS)
def test_parametrized_weights_are_read_through_the_parametrization(kind):
    """The cells read weights from _parameters for speed; a parametrization (the weight is then a property) still
    applies, with gradients reaching the original parameter, as for nn.*Cell."""
    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    ref, fused = make_modules(kind)
    for m in (ref, fused):
        parametrize.register_parametrization(m, "weight_hh", Doubled())
    x, h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    hx = (h, torch.randn_like(h)) if kind == "lstm" else h  # non-zero h: the output depends on weight_hh
    exp, got = ref(x, hx), fused(x, hx)
    exp, got = (exp if isinstance(exp, tuple) else (exp,)), (got if isinstance(got, tuple) else (got,))
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-12)
    ge = torch.autograd.grad(exp[0].sum(), ref.parametrizations.weight_hh.original)
    gg = torch.autograd.grad(got[0].sum(), fused.parametrizations.weight_hh.original)
    torch.testing.assert_close(gg, ge, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_cell_loop_with_unused_final_cell_state_matches_nn(kind):
    """A decoder loop whose loss reads only h (LSTM's last c' gets no gradient), float64."""
    ref, fused = make_modules(kind, I=6, H=6)
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    results = []
    for m in (ref, fused):
        state, loss = None, 0
        for t in range(5):
            state = m(x[t] if t == 0 else (state[0] if kind == "lstm" else state), state)
            loss = loss + (state[0] if kind == "lstm" else state).square().sum()
        results.append(torch.autograd.grad(loss, list(m.parameters())))
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("kind", KINDS)
def test_cpu_autocast_cell_runs_in_the_autocast_dtype(kind, dtype):
    ref, fused = make_modules(kind, dtype=torch.float32, I=8, H=16)
    x = torch.randn(4, 8)
    expected = fused(x)
    with torch.autocast("cpu", dtype=dtype):
        out = fused(x)
    outs = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == dtype for o in outs)
    sum(o.float().square().sum() for o in outs).backward()
    assert all(p.grad.dtype == torch.float32 for p in fused.parameters())
    exp = expected if isinstance(expected, tuple) else (expected,)
    for o, e in zip(outs, exp):
        torch.testing.assert_close(o.float(), e, atol=3e-2, rtol=3e-2)


def test_torch_compile_fullgraph_cell_loop_fwd_and_bwd():
    torch.manual_seed(0)
    fused = FusedLSTMCell(5, 7)
    gru = FusedGRUCell(7, 7)
    x = torch.randn(4, 3, 5)

    def loop(x):
        h = c = torch.zeros(3, 7)
        for t in range(x.shape[0]):
            h, c = fused(x[t], (h, c))
            h = gru(h, h)
        return h.square().sum()

    compiled = torch.compile(loop, fullgraph=True)
    params = list(fused.parameters()) + list(gru.parameters())
    got = torch.autograd.grad(compiled(x), params)
    exp = torch.autograd.grad(loop(x), params)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- CUDA
@requires_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_cell_op_matches_nn_cell_float64(kind):
    ref, fused = make_modules(kind)
    ref, fused = ref.cuda(), fused.cuda()
    fused.backend = "cuda"
    x = torch.randn(5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    h = torch.randn(5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    hx = (h, torch.randn_like(h).requires_grad_()) if kind == "lstm" else h
    _assert_cell_op_matches_nn(kind, ref, fused, x, hx)


@requires_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_cell_op_gradcheck_and_float32(kind):
    args = make_args(kind, 3, 4, 37, device="cuda")
    present = [a for a in args if a is not None]

    def fn(*ts):
        it = iter(ts)
        h, c = run_op(kind, [next(it) if a is not None else None for a in args])
        return (h, c) if c is not None else (h,)

    assert torch.autograd.gradcheck(fn, present, eps=1e-6, atol=1e-8)
    args32 = make_args(kind, 64, 32, 128, dtype=torch.float32, device="cuda")
    got = [t for t in run_op(kind, args32) if t is not None]
    exp = reference_cell(CELL_KINDS[kind], *args32)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
