"""rnnfused.reference against torch.nn in float64: outputs, final states and every gradient to 1e-10."""
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnfused import reference

from helpers import CELLS, random_like

CONFIGS = [
    # cell, bias, proj, lengths (None: full sequences)
    (cell, bias, proj, lengths)
    for cell, bias, proj, lengths in itertools.product(CELLS, (True, False), (0, 3), (None, (5, 2, 4, 1)))
    if not (proj and cell != "lstm")
]


def _id(cfg):
    cell, bias, proj, lengths = cfg
    return "-".join([cell] + (["nobias"] if not bias else []) + ([f"P{proj}"] if proj else []) +
                    (["packed"] if lengths else []))


def _torch_module(cell, I, H, bias, proj):
    if cell == "lstm":
        return nn.LSTM(I, H, bias=bias, bidirectional=True, proj_size=proj)
    if cell == "gru":
        return nn.GRU(I, H, bias=bias, bidirectional=True)
    return nn.RNN(I, H, bias=bias, bidirectional=True, nonlinearity=cell[4:])


def _reference_bidirectional(cell, m, x, h0, c0, lengths):
    outs, h_n, c_n = [], [], []
    for d, suffix in enumerate(("", "_reverse")):
        p = {name: getattr(m, f"{name}_l0{suffix}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                                        "weight_hr")}
        args = dict(lengths=lengths, reverse=bool(d))
        if cell == "lstm":
            o, h, c = reference.lstm_layer(x, h0[d], c0[d], p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"],
                                           p["weight_hr"], **args)
            c_n.append(c)
        elif cell == "gru":
            o, h = reference.gru_layer(x, h0[d], p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"], **args)
        else:
            o, h = reference.rnn_layer(x, h0[d], p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"], **args,
                                       nonlinearity=cell[4:])
        outs.append(o)
        h_n.append(h)
    result = [torch.cat(outs, -1), torch.stack(h_n)]
    return result + ([torch.stack(c_n)] if cell == "lstm" else [])


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_reference_matches_torch_nn(cfg):
    cell, bias, proj, lengths = cfg
    torch.manual_seed(0)
    T, B, I, H = 5, 4, 3, 6
    H_out = proj or H
    m = _torch_module(cell, I, H, bias, proj).double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, B, H_out, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, B, H, dtype=torch.float64, requires_grad=True) if cell == "lstm" else None
    hx = (h0, c0) if cell == "lstm" else h0

    if lengths is None:
        out, state = m(x, hx)
        len_t = None
    else:
        len_t = torch.tensor(lengths)
        packed_out, state = m(pack_padded_sequence(x, len_t, enforce_sorted=False), hx)
        out, _ = pad_packed_sequence(packed_out, total_length=T)
    expected = [out] + (list(state) if cell == "lstm" else [state])
    actual = _reference_bidirectional(cell, m, x, h0, c0, len_t)

    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)
    leaves = [x, h0] + ([c0] if c0 is not None else []) + list(m.parameters())
    upstream = random_like(expected)
    g_expected = torch.autograd.grad(expected, leaves, upstream)
    g_actual = torch.autograd.grad(actual, leaves, upstream)
    for a, e in zip(g_actual, g_expected):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-10)
