"""rnnfused.convert / rnnfused.revert: every nn.LSTM/GRU/RNN/*Cell inside a model becomes its fused twin in place and
back; outputs and gradients are unchanged (float64, cpu backend), everything attached to a layer is kept, and the
layers it must not touch are left alone with a warning naming them."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import rnnfused
from rnnfused import FusedGRU, FusedGRUCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell
from rnnfused.convert import FUSED_TWIN

F64 = torch.float64


class Inner(nn.Module):
    """A GRU and an LSTM cell one level further down."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)
        self.cell = nn.LSTMCell(5, 4)

    def forward(self, x):                       # x [B, T, 8]
        out, h = self.gru(x)                    # [B, T, 5]
        state = None
        for t in range(out.shape[1]):
            state = self.cell(out[:, t], state)
        return state[0] + h[0].sum(-1, keepdim=True)   # [B, 4]


class Nested(nn.Module):
    """Recurrent layers as attributes, in a ModuleList, in a Sequential, one level down, and one cell used twice
    under two names (shared)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4)   # out [T, B, 8]
        self.layers = nn.ModuleList([nn.RNN(8, 8, nonlinearity="relu"), nn.GRU(8, 4)])
        self.head = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.inner = Inner()
        self.shared = nn.GRUCell(4, 4)
        self.shared_again = self.shared
        self.rnn_cell = nn.RNNCell(4, 4, nonlinearity="tanh")

    def forward(self, x):                       # x [T, B, 3]
        y, _ = self.lstm(x)
        y, _ = self.layers[0](y)
        y, h = self.layers[1](y)                # [T, B, 4]
        z = self.inner(self.head(y).transpose(0, 1))   # [B, 4]
        z = self.shared_again(self.shared(z, h[0]))
        return self.rnn_cell(z)                 # [B, 4]


def _outputs_and_grads(model, x, upstream):
    x = x.detach().requires_grad_()
    out = model(x)
    grads = torch.autograd.grad(out, [x] + list(model.parameters()), upstream)
    return [out.detach()] + list(grads)


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = Nested().to(F64)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(7, 3, 3, generator=g, dtype=F64)
    upstream = torch.randn(3, 4, generator=g, dtype=F64)
    return model, x, upstream


def test_convert_then_revert_keeps_outputs_gradients_and_parameters():
    model, x, upstream = _model_and_data()
    params = list(model.parameters())
    expected = _outputs_and_grads(model, x, upstream)

    assert rnnfused.convert(model, backend="cpu") is model
    assert type(model.lstm) is FusedLSTM and model.lstm.proj_size == 4
    assert type(model.layers[0]) is FusedRNN and model.layers[0].mode == "RNN_RELU"
    assert type(model.layers[1]) is FusedGRU and type(model.inner.gru) is FusedGRU
    assert type(model.inner.cell) is FusedLSTMCell and type(model.rnn_cell) is FusedRNNCell
    assert type(model.shared) is FusedGRUCell and model.shared is model.shared_again, "still one shared cell"
    assert type(model.head[0]) is nn.Linear
    fused = [m for m in model.modules() if type(m) in FUSED_TWIN.values()]
    assert len(fused) == 7 and all(m.backend == "cpu" for m in fused)
    assert all(p is q for p, q in zip(model.parameters(), params)), "the same Parameter objects"
    got = _outputs_and_grads(model, x, upstream)
    for name, a, b in zip(["output", "grad input"] + [n for n, _ in model.named_parameters()], got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")

    assert rnnfused.revert(model) is model
    assert [type(m) for m in model.modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))] == [
        nn.LSTM, nn.RNN, nn.GRU, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell]
    assert not any(hasattr(m, "backend") for m in model.modules())
    assert all(p is q for p, q in zip(model.parameters(), params))
    for a, b in zip(_outputs_and_grads(model, x, upstream), expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_layer_as_the_root_module_is_converted_itself():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, batch_first=True).to(F64)
    x = torch.randn(2, 4, 3, dtype=F64)
    expected = lstm(x)[0]
    fused = rnnfused.convert(lstm, backend="cpu")
    assert fused is lstm and type(fused) is FusedLSTM and fused.batch_first
    torch.testing.assert_close(fused(x)[0], expected, rtol=1e-10, atol=1e-12)
    back = rnnfused.revert(fused)
    assert back is lstm and type(back) is nn.LSTM and not hasattr(back, "backend")


def test_optimizer_made_before_convert_keeps_training_the_same_parameters():
    """convert keeps the Parameter objects, so an optimizer created before it goes on working: same losses and
    weights as the same training on plain nn.*."""
    model, x, upstream = _model_and_data(seed=3)
    twin = copy.deepcopy(model)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (model, twin)]
    for opt, m in zip(optimizers, (model, twin)):  # one step on nn.* for both, so momentum is non-zero
        opt.zero_grad()
        (m(x) * upstream).sum().backward()
        opt.step()
    rnnfused.convert(twin, backend="cpu")
    for _ in range(3):
        losses = []
        for opt, m in zip(optimizers, (model, twin)):
            opt.zero_grad()
            loss = (m(x) * upstream).sum()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-10)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-12, msg=name)


def test_mode_hooks_requires_grad_device_dtype_and_attributes_are_kept():
    model = nn.Sequential(nn.GRU(3, 4), nn.LSTMCell(4, 4)).to(F64)
    model[0].eval()
    model[0].weight_hh_l0.requires_grad_(False)
    model[0].note = "kept"
    calls = []
    handle = model[0].register_forward_hook(lambda m, inputs, out: calls.append(type(m).__name__))
    pre = model[1].register_forward_pre_hook(lambda m, inputs: calls.append("pre"))
    rnnfused.convert(model, backend="cpu")
    gru = model[0]
    assert not gru.training and model[1].training
    assert not gru.weight_hh_l0.requires_grad and gru.weight_ih_l0.requires_grad
    assert gru.weight_ih_l0.dtype == F64 and gru.note == "kept"
    gru(torch.randn(2, 1, 3, dtype=F64))
    model[1](torch.randn(2, 4, dtype=F64))
    assert calls == ["FusedGRU", "pre"]
    handle.remove(), pre.remove()
    gru(torch.randn(2, 1, 3, dtype=F64))
    assert calls == ["FusedGRU", "pre"], "hook handles made before convert still remove their hooks"
    assert list(model.state_dict()) == ["0.weight_ih_l0", "0.weight_hh_l0", "0.bias_ih_l0", "0.bias_hh_l0",
                                        "1.weight_ih", "1.weight_hh", "1.bias_ih", "1.bias_hh"]


@pytest.mark.parametrize("torch_cls", list(FUSED_TWIN), ids=lambda c: c.__name__)
def test_converted_layers_hold_what_a_freshly_built_twin_holds(torch_cls):
    """convert changes the class of an existing object: it must end up with exactly the attributes the twin's
    constructor sets (this fails when a fused class gains state that convert does not provide)."""
    args = (3, 4)
    layer = torch_cls(*args)
    rnnfused.convert(layer)
    fresh = FUSED_TWIN[torch_cls](*args)
    assert set(vars(layer)) == set(vars(fresh))
    assert set(vars(rnnfused.revert(layer))) == set(vars(torch_cls(*args)))


def test_subclasses_overriding_forward_are_left_alone_with_a_warning():
    class ResidualLSTM(nn.LSTM):
        def forward(self, x, hx=None):
            out, state = super().forward(x, hx)
            return out + x, state

    class InitOnlyGRU(nn.GRU):
        """Overrides only what does not change forward's computation."""

        def reset_parameters(self):
            for p in self.parameters():
                nn.init.constant_(p, 0.1)

        def describe(self):
            return "init-only"

    model = nn.ModuleDict({"res": ResidualLSTM(4, 4), "init": InitOnlyGRU(4, 4), "plain": nn.LSTM(4, 4)})
    with pytest.warns(UserWarning, match=r"left 1 recurrent layer.*res \(.*ResidualLSTM subclasses nn.LSTM and "
                                         r"overrides forward\)"):
        rnnfused.convert(model)
    assert type(model["res"]) is ResidualLSTM and not hasattr(model["res"], "backend")
    assert type(model["init"]) is FusedGRU and type(model["plain"]) is FusedLSTM
    rnnfused.revert(model)
    assert type(model["init"]) is InitOnlyGRU and model["init"].describe() == "init-only"
    assert type(model["plain"]) is nn.LSTM


def test_parametrized_layers_are_left_alone_with_a_warning():
    class Scale(nn.Module):
        def forward(self, w):
            return 2 * w

    model = nn.Sequential(nn.GRU(3, 3), nn.LSTM(3, 3))
    parametrize.register_parametrization(model[1], "weight_hh_l0", Scale())
    with pytest.warns(UserWarning, match=r"1 \(its parameters are parametrized"):
        rnnfused.convert(model)
    assert type(model[0]) is FusedGRU and isinstance(model[1], nn.LSTM)


def test_no_warning_when_everything_converts():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnfused.convert(nn.Sequential(nn.LSTM(2, 3), nn.Linear(3, 3)))


def test_fused_layers_get_the_backend_and_revert_turns_built_ones_into_nn():
    model = nn.Sequential(FusedLSTM(3, 4, backend="reference"), nn.GRU(4, 4))
    rnnfused.convert(model, backend="cpu")
    assert model[0].backend == "cpu" and model[1].backend == "cpu"
    rnnfused.convert(model)
    assert model[0].backend is None, "backend=None: the selection rule"
    weights = list(model.parameters())
    rnnfused.revert(model)
    assert type(model[0]) is nn.LSTM and type(model[1]) is nn.GRU
    assert all(p is q for p, q in zip(model.parameters(), weights))


def test_converted_model_survives_save_load_and_deepcopy():
    model, x, _ = _model_and_data()
    rnnfused.convert(model, backend="cpu")
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded.lstm) is FusedLSTM and loaded.lstm.backend == "cpu"
    assert loaded.shared is loaded.shared_again
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(model)(x), model(x), rtol=0, atol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend must be None, 'auto' or one of"):
        rnnfused.convert(nn.LSTM(2, 2), backend="cudnn")
    with pytest.raises(TypeError, match="expects an nn.Module, got str"):
        rnnfused.convert("model")
    with pytest.raises(TypeError, match="expects an nn.Module"):
        rnnfused.revert(None)
    assert type(rnnfused.convert(nn.LSTM(2, 2), backend="AUTO")) is FusedLSTM
