"""torch.func transforms and forward-mode AD through the fused modules (rnnfused/_transforms.py).

The custom ops' torch.library autograd cannot run under torch.func (grad/vjp/jacrev raise) and the ops have no
forward-mode formula (a jvp tangent would come out as zero), so while either is in play the modules compute the
reference equations. Every result here is checked against plain reverse-mode autograd through the fused kernels
(float64), which the op gradchecks cover."""
import pytest
import torch
from torch.autograd import forward_ad
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap

from rnnfused import (FusedGRU, FusedGRUCell, FusedLayerNormGRUCell, FusedLayerNormLSTM, FusedLSTM, FusedLSTMCell,
                      FusedRNN, FusedRNNCell)

DT = torch.float64
T, B, I, H = 4, 3, 3, 4

# (name, module factory, input shape): sequence layers take [T, B, I], cells [B, I].
MODULES = [
    ("lstm", lambda: FusedLSTM(I, H), (T, B, I)),
    ("lstm-2l-bidir-proj", lambda: FusedLSTM(I, H, num_layers=2, bidirectional=True, proj_size=2), (T, B, I)),
    ("gru-batch-first", lambda: FusedGRU(I, H, batch_first=True), (B, T, I)),
    ("rnn-relu-nobias", lambda: FusedRNN(I, H, nonlinearity="relu", bias=False), (T, B, I)),
    ("layer-norm-lstm", lambda: FusedLayerNormLSTM(I, H), (T, B, I)),
    ("lstm-cell", lambda: FusedLSTMCell(I, H), (B, I)),
    ("gru-cell", lambda: FusedGRUCell(I, H), (B, I)),
    ("rnn-cell", lambda: FusedRNNCell(I, H), (B, I)),
    ("layer-norm-gru-cell", lambda: FusedLayerNormGRUCell(I, H), (B, I)),
]
IDS = [m[0] for m in MODULES]


def first_output(out):
    """The output tensor of a sequence layer ((output, state)), the new h of a cell (h or (h, c))."""
    return out[0] if isinstance(out, tuple) else out


def setup(factory, shape, seed=0):
    torch.manual_seed(seed)
    module = factory().to(DT)
    x = torch.randn(*shape, dtype=DT)
    return module, x


@pytest.mark.parametrize("name,factory,shape", MODULES, ids=IDS)
def test_func_grad_of_parameters_equals_autograd(name, factory, shape):
    module, x = setup(factory, shape)
    params = {k: v.detach() for k, v in module.named_parameters()}

    def loss(p, x):
        return first_output(functional_call(module, p, (x,))).pow(2).sum()

    got = grad(loss, argnums=(0, 1))(params, x)
    # Plain autograd: the fused kernels' backward.
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    xr = x.clone().requires_grad_()
    want = torch.autograd.grad(loss(leaves, xr), [*leaves.values(), xr])
    for (k, g), w in zip(got[0].items(), want[:-1]):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"d loss / d {k}")
    torch.testing.assert_close(got[1], want[-1], rtol=1e-10, atol=1e-12)


def reverse_mode_jacobian(f, x):
    """[*out, *x] by plain autograd through the fused kernels (one backward per output element)."""
    return torch.autograd.functional.jacobian(f, x)


@pytest.mark.parametrize("name,factory,shape", MODULES, ids=IDS)
def test_forward_mode_tangents_equal_jacobian_products(name, factory, shape):
    module, x = setup(factory, shape)
    f = lambda x: first_output(module(x))  # noqa: E731
    J = reverse_mode_jacobian(f, x)
    v = torch.randn_like(x)
    Jv = (J.reshape(-1, x.numel()) @ v.reshape(-1)).reshape(J.shape[: J.dim() - x.dim()])

    _, tangent = jvp(f, (x,), (v,))
    torch.testing.assert_close(tangent, Jv, rtol=1e-10, atol=1e-12)
    # The same through dual tensors, outside torch.func.
    with forward_ad.dual_level():
        out = f(forward_ad.make_dual(x, v))
        dual_tangent = forward_ad.unpack_dual(out).tangent
    assert dual_tangent is not None
    torch.testing.assert_close(dual_tangent, Jv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jacfwd(f)(x), J, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jacrev(f)(x), J, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,factory,shape", [m for m in MODULES if m[0] in ("lstm", "gru-cell", "layer-norm-lstm")],
                         ids=["lstm", "gru-cell", "layer-norm-lstm"])
def test_per_sample_gradients_with_vmap(name, factory, shape):
    """The torch.func recipe: vmap(grad(loss)) over the batch equals one autograd.grad per sample."""
    module, x = setup(factory, shape)
    batch_dim = 0 if len(shape) == 2 or getattr(module, "batch_first", False) else 1
    params = {k: v.detach() for k, v in module.named_parameters()}

    def loss(p, sample):
        return first_output(functional_call(module, p, (sample.unsqueeze(batch_dim),))).tanh().sum()

    per_sample = vmap(grad(loss), in_dims=(None, batch_dim))(params, x)
    for b in range(x.size(batch_dim)):
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        want = torch.autograd.grad(loss(leaves, x.select(batch_dim, b)), list(leaves.values()))
        for (k, g), w in zip(per_sample.items(), want):
            torch.testing.assert_close(g[b], w, rtol=1e-10, atol=1e-12, msg=f"sample {b}, d loss / d {k}")


def test_the_fused_kernels_still_run_outside_transforms():
    """The reference equations only while a transform or a dual level is active: plain calls record the fused op's
    autograd node (the sequence op's torch.library node; the cpu cell step's C++ node)."""
    module, x = setup(MODULES[0][1], MODULES[0][2])
    assert type(module(x)[0].grad_fn).__name__ == "GeneratedBackwardFor_rnnfused_lstm_defaultBackward"
    cell, xc = setup(MODULES[5][1], MODULES[5][2])
    assert type(cell(xc)[0].grad_fn).__name__ == "CppFunction"
    with forward_ad.dual_level():
        assert "rnnfused" not in type(module(x)[0].grad_fn).__name__
        assert type(cell(xc)[0].grad_fn).__name__ != "CppFunction"
