"""Weight-drop (DropConnect on ``weight_hh_l*``, AWD-LSTM) on the fused sequence modules: one mask per weight and
forward call in training, drawn from the torch generator; nothing in eval; gradients through the mask."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnfused import FusedGRU, FusedLSTM, FusedRNN

from helpers import raised

T, B, I, H = 6, 3, 4, 5
P = 0.4


def make(cls, weight_drop=P, **kwargs):
    torch.manual_seed(0)
    return cls(I, H, weight_drop=weight_drop, backend="cpu", **kwargs).double()


@pytest.mark.parametrize("cls", [FusedLSTM, FusedGRU, FusedRNN])
def test_training_uses_one_dropped_mask_per_weight_and_call(cls):
    """The output and gradients equal nn.* run on weight_hh_l* passed through F.dropout in the module's order
    (layer by layer, forward then reverse direction) from the same generator state."""
    fused = make(cls, num_layers=2, bidirectional=True)
    ref = cls.to_torch(fused)
    x = torch.randn(T, B, I, dtype=torch.float64)

    torch.manual_seed(7)
    out, _ = fused(x)
    out.sum().backward()

    torch.manual_seed(7)
    leaves = {n: p.detach().clone().requires_grad_() for n, p in ref.named_parameters()}
    weights = {n: (F.dropout(w, P, training=True) if n.startswith("weight_hh") else w) for n, w in leaves.items()}
    ref_out, _ = torch.func.functional_call(ref, weights, (x,))
    ref_out.sum().backward()

    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=1e-12)
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, leaves[name].grad, atol=1e-12, rtol=1e-12, msg=name)
        if name.startswith("weight_hh"):
            # dropped entries get no gradient: about P of them
            zero = (p.grad == 0).double().mean().item()
            assert 0.1 < zero < 0.8, (name, zero)


def test_masks_are_fresh_per_call_and_reproducible_by_seed():
    fused = make(FusedLSTM)
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(1)
    a = fused(x)[0]
    b = fused(x)[0]
    torch.manual_seed(1)
    a2 = fused(x)[0]
    assert not torch.equal(a, b)
    assert torch.equal(a, a2)


@pytest.mark.parametrize("cls", [FusedLSTM, FusedGRU])
def test_eval_and_zero_probability_are_the_plain_module(cls):
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.manual_seed(0)
    plain = cls(I, H, backend="cpu").double()  # no weight_drop argument at all
    expected = plain(x)[0]
    assert torch.equal(make(cls, weight_drop=0.0).train()(x)[0], expected)  # p = 0 in training: bitwise the same
    assert torch.equal(make(cls).eval()(x)[0], expected)                    # eval: no drop


def test_weight_drop_composes_with_resets_and_compile():
    fused = make(FusedGRU, num_layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    resets = torch.zeros(T, B, dtype=torch.bool)
    resets[3, 1] = True
    compiled = torch.compile(lambda x, r: fused(x, resets=r), fullgraph=True)
    fused.eval()
    torch.testing.assert_close(compiled(x, resets)[0], fused(x, resets=resets)[0], atol=1e-12, rtol=1e-12)
    fused.train()
    out = compiled(x, resets)[0]  # training: a dropped mask inside the compiled graph
    out.sum().backward()
    assert fused.weight_hh_l0.grad is not None and (fused.weight_hh_l0.grad == 0).any()


def test_weight_drop_argument_errors_and_repr():
    for bad in (-0.1, 1.0, 1.5, "0.3", True):
        exc = raised(lambda: FusedLSTM(I, H, weight_drop=bad))
        assert isinstance(exc, ValueError) and "weight_drop must be a probability in [0, 1)" in str(exc), bad
    assert "weight_drop=0.25" in repr(FusedGRU(I, H, weight_drop=0.25))
    assert "weight_drop" not in repr(FusedGRU(I, H))
    # not an nn.* argument: the nn twin has none, and the state_dict is nn's
    m = FusedLSTM(I, H, weight_drop=0.25)
    assert set(m.state_dict()) == set(nn.LSTM(I, H).state_dict())
    assert isinstance(m.to_torch(), nn.LSTM)


def test_convert_and_revert_handle_the_fused_only_options():
    import rnnfused

    converted = rnnfused.convert(nn.GRU(I, H))
    assert converted.weight_drop == 0.0 and converted.zoneout_hidden == 0.0
    with pytest.warns(UserWarning, match="loses weight_drop=0.25"):
        reverted = rnnfused.revert(FusedLSTM(I, H, weight_drop=0.25))
    assert type(reverted) is nn.LSTM and "weight_drop" not in vars(reverted)
