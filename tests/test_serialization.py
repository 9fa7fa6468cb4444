"""torch.save of whole models holding fused layers, and torch.load with PyTorch's default weights_only=True (the fused
classes are safe globals once rnnfused is imported) and with weights_only=False; the allowlist is exactly the six
fused classes and covers everything a pickled fused module references."""
import io
import pickletools
import zipfile

import pytest
import torch
from torch import nn

import rnnfused
from rnnfused import (FusedGRU, FusedGRUCell, FusedLayerNormGRU, FusedLayerNormGRUCell, FusedLayerNormLSTM,
                      FusedLayerNormLSTMCell, FusedLSTM, FusedLSTMCell, FusedRNN, FusedRNNCell)

FUSED_CLASSES = {FusedLSTM, FusedGRU, FusedRNN, FusedLSTMCell, FusedGRUCell, FusedRNNCell, FusedLayerNormLSTM,
                 FusedLayerNormGRU, FusedLayerNormLSTMCell, FusedLayerNormGRUCell}


class Seq2Seq(nn.Module):
    """A user's model: fused layers and cells next to ordinary nn modules."""

    def __init__(self):
        super().__init__()
        self.encoder = FusedLSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3, batch_first=True, backend="cpu")
        self.gru = FusedGRU(6, 5)
        self.rnn = FusedRNN(5, 5, nonlinearity="relu")
        self.cells = nn.ModuleList([FusedLSTMCell(5, 5), FusedGRUCell(5, 5), FusedRNNCell(5, 5, nonlinearity="relu")])
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.encoder(x)                 # [B, T, 6]
        y, _ = self.gru(y.transpose(0, 1))     # [T, B, 5]
        y, h = self.rnn(y)
        hc, _ = self.cells[0](y[-1])
        hg = self.cells[1](hc, h[0])
        return self.head(self.cells[2](hg))


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load(data: bytes, **kw):
    return torch.load(io.BytesIO(data), **kw)


@pytest.mark.parametrize("weights_only", [True, False], ids=["weights_only", "full_unpickle"])
def test_whole_model_round_trips_with_torch_load(weights_only):
    torch.manual_seed(0)
    model = Seq2Seq().eval()
    x = torch.randn(2, 7, 4)
    data = _saved(model)
    if weights_only:
        # torch.load's default; the user allowlists their own classes (and nn's) as usual, not rnnfused's.
        with torch.serialization.safe_globals([Seq2Seq, nn.Linear, nn.ModuleList]):
            loaded = _load(data)
    else:
        loaded = _load(data, weights_only=False)
    assert type(loaded) is Seq2Seq and loaded.encoder.backend == "cpu" and loaded.encoder.proj_size == 3
    assert loaded.rnn.nonlinearity == "relu" and loaded.rnn.mode == "RNN_RELU"
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    # Trainable as saved: the flat weights of nn.RNNBase are rebuilt and reach the parameters.
    loaded.train()
    loaded(x).square().sum().backward()
    assert all(p.grad is not None for p in loaded.parameters())


@pytest.mark.parametrize("cls", sorted(FUSED_CLASSES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_each_fused_module_loads_with_default_weights_only(cls):
    torch.manual_seed(0)
    m = cls(3, 4, backend="cpu")
    loaded = _load(_saved(m))  # nothing allowlisted by the caller
    assert type(loaded) is cls and loaded.backend == "cpu"
    x = torch.randn(2, 3) if "Cell" in cls.__name__ else torch.randn(5, 2, 3)
    out, exp = loaded(x), m(x)
    out, exp = (out[0], exp[0]) if isinstance(out, tuple) else (out, exp)
    torch.testing.assert_close(out, exp, atol=0, rtol=0)


def test_user_classes_still_need_allowlisting():
    with pytest.raises(Exception, match="Seq2Seq"):
        _load(_saved(Seq2Seq()))


def _pickle_globals(data: bytes) -> set:
    """'module.name' of every global a torch.save file's pickle references."""
    z = zipfile.ZipFile(io.BytesIO(data))
    pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
    return found


def test_allowlist_is_exactly_the_fused_classes_and_covers_their_pickles():
    from torch._weights_only_unpickler import _get_allowed_globals

    registered = {g for g in torch.serialization.get_safe_globals() if not isinstance(g, tuple)}
    ours = {g for g in registered if getattr(g, "__module__", "").startswith("rnnfused")}
    assert ours == FUSED_CLASSES
    assert nn.RNNBase not in registered and nn.RNNCellBase not in registered
    # Everything a pickled fused module references is allowed by torch by default, or is the module's class.
    default = set(_get_allowed_globals())
    for m in (FusedLSTM(3, 4, 2, proj_size=2, bidirectional=True, backend="cpu"), FusedGRU(3, 4), FusedRNN(3, 4),
              FusedLSTMCell(3, 4), FusedGRUCell(3, 4, bias=False), FusedRNNCell(3, 4, nonlinearity="relu"),
              FusedLayerNormLSTM(3, 4, 2, bidirectional=True), FusedLayerNormGRUCell(3, 4)):
        referenced = _pickle_globals(_saved(m)) - {"__builtin__.set", "builtins.set"}
        beyond_default = {g for g in referenced if g not in default}
        assert beyond_default == {f"{type(m).__module__}.{type(m).__name__}"}, beyond_default
    assert rnnfused._safe_globals.SAFE_GLOBALS and set(rnnfused._safe_globals.SAFE_GLOBALS) == FUSED_CLASSES
