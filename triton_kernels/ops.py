"""Registers the Triton backend's ops: rnnfused::{lstm,gru,rnn_tanh,rnn_relu}{,_backward}_triton.

Each is a torch.library.triton_op with exactly the schema of the C++ op of the same name without the suffix
(csrc/ops.cpp). In torch 2.13 triton_op infers the schema from the annotations and ignores ``schema=``, so the
annotated signatures below ARE the schemas (tests/test_triton_backend.py compares them with the C++ ones); the
schema string is passed too, for versions that read it.

triton_op registers the traced body as the fake function; rnnfused._op_family.register_family("_triton") then replaces
it with the family's shape-only fake (the same one the C++ ops use: cheaper, and it needs no kernel — the
interpreter's kernels cannot run on fake tensors) and registers the autograd formula (BPTT through the
*_backward_triton op). Under torch.compile the triton_op is still decomposed into its body: the GEMMs, which
Inductor compiles, and one opaque recurrence node for either path (recurrence_ops.py).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.library import triton_op

from rnnfused._cells import CELL_KINDS
from rnnfused._extension import extension_loaded
from rnnfused._inputs import LayerInputs
from rnnfused._op_family import register_family

from .layer import layer_backward, layer_forward

LSTM, GRU = CELL_KINDS["lstm"], CELL_KINDS["gru"]
T2, T3, T5, T6, T8 = (Tuple[(Tensor,) * n] for n in (2, 3, 5, 6, 8))


def _schema(name: str) -> str:
    """The C++ op's schema (registered by rnnfused._C), without its name, when the extension is loaded."""
    if not extension_loaded():
        return None
    return str(getattr(torch.ops.rnnfused, name).default._schema).split(name, 1)[1]


@triton_op("rnnfused::lstm_triton", mutates_args=(), schema=_schema("lstm"))
def lstm_triton(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
                b_hh: Optional[Tensor], w_hr: Optional[Tensor], lengths: Optional[Tensor], reverse: bool) -> T5:
    return layer_forward(LSTM, LayerInputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse))


@triton_op("rnnfused::lstm_backward_triton", mutates_args=(), schema=_schema("lstm_backward"))
def lstm_backward_triton(grad_output: Tensor, grad_h_n: Tensor, grad_c_n: Tensor, input: Tensor, h0: Tensor,
                         c0: Tensor, w_ih: Tensor, w_hh: Tensor, w_hr: Optional[Tensor], lengths: Optional[Tensor],
                         reverse: bool, output: Tensor, saved: Tensor, cells: Tensor) -> T8:
    x = LayerInputs(input, h0, c0, w_ih, w_hh, None, None, w_hr, lengths, reverse)
    return layer_backward(LSTM, grad_output, grad_h_n, grad_c_n, x, output, saved, cells)


@triton_op("rnnfused::gru_triton", mutates_args=(), schema=_schema("gru"))
def gru_triton(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
               lengths: Optional[Tensor], reverse: bool) -> T3:
    return layer_forward(GRU, LayerInputs(input, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse))


@triton_op("rnnfused::gru_backward_triton", mutates_args=(), schema=_schema("gru_backward"))
def gru_backward_triton(grad_output: Tensor, grad_h_n: Tensor, input: Tensor, h0: Tensor, w_ih: Tensor,
                        w_hh: Tensor, lengths: Optional[Tensor], reverse: bool, output: Tensor, saved: Tensor) -> T6:
    x = LayerInputs(input, h0, None, w_ih, w_hh, None, None, None, lengths, reverse)
    return layer_backward(GRU, grad_output, grad_h_n, None, x, output, saved, None)


def _register_rnn(name: str) -> None:
    kind = CELL_KINDS[name]

    def forward(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
                b_hh: Optional[Tensor], lengths: Optional[Tensor], reverse: bool) -> T2:
        return layer_forward(kind, LayerInputs(input, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse))

    def backward(grad_output: Tensor, grad_h_n: Tensor, input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
                 lengths: Optional[Tensor], reverse: bool, output: Tensor) -> T6:
        x = LayerInputs(input, h0, None, w_ih, w_hh, None, None, None, lengths, reverse)
        return layer_backward(kind, grad_output, grad_h_n, None, x, output, None, None)

    triton_op(f"rnnfused::{name}_triton", forward, mutates_args=(), schema=_schema(name))
    triton_op(f"rnnfused::{name}_backward_triton", backward, mutates_args=(), schema=_schema(f"{name}_backward"))


_register_rnn("rnn_tanh")
_register_rnn("rnn_relu")
register_family("_triton")
