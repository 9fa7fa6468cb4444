"""LayerNorm LSTM and GRU (Ba et al. 2016; the form Haste implements), as sequence modules and single-step cells.

    from rnnfused import FusedLayerNormLSTM
    lstm = FusedLayerNormLSTM(256, 512, num_layers=2, bidirectional=True, batch_first=True)  # nn.LSTM's arguments
    out, (h_n, c_n) = lstm(x, (h0, c0))

The constructor, inputs and outputs of ``nn.LSTM``/``nn.GRU`` (layers, bidirectional, batch_first, dropout,
PackedSequence, resets, zoneout, weight_drop; no proj_size), with per layer-direction LayerNorm parameters next to
nn's weights (``_reverse`` suffix for the reverse direction), initialised to ones (weights) and zeros (biases):
``ln_ih_weight_l{k}``, ``ln_ih_bias_l{k}``, ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` [G·H] and, for the LSTM,
``ln_c_weight_l{k}``, ``ln_c_bias_l{k}`` [H]. Each step (LN over the whole vector, biased variance, eps 1e-5):

    LSTM  gates = LN_ih(x W_ihᵀ) + LN_hh(h W_hhᵀ) + b_ih + b_hh;  c' = σ(f)·c + σ(i)·tanh(g);  h' = σ(o)·tanh(LN_c(c'))
    GRU   a = LN_ih(x W_ihᵀ) + b_ih,  b = LN_hh(h W_hhᵀ) + b_hh;  r = σ(a_r + b_r),  z = σ(a_z + b_z),
          n = tanh(a_n + r·b_n),  h' = (1 − z)·n + z·h

The input side (one GEMM and one LayerNorm over all steps) runs as torch ops; the recurrence runs in the
``layernorm_<cell>`` ops of the backend (rnnfused/_layer_norm_ops.py): ``cpu`` and ``cuda`` (step-wise: the
persistent CUDA kernels decline these cells, their per-step LayerNorm needs a reduction over all hidden units of a
row, which the persistent kernels split across CTAs), ``triton`` (per-step kernels), ``reference``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from . import _layer_norm_ops as ln
from .backends import get_backend
from ._cells import CellKind
from .modules import _FusedCellBase, _FusedRNNBase, _no_proj_size, _onnx_exporting, _SEQUENCE_ARGS, _SEQUENCE_IO
from ._validation import check_cell_inputs

__all__ = ["FusedLayerNormLSTM", "FusedLayerNormGRU", "FusedLayerNormLSTMCell", "FusedLayerNormGRUCell"]


def _layer_norm_shapes(kind, hidden_size: int):
    """(name, size, initial value) of a layer-direction's LayerNorm parameters."""
    GH = kind.gates * hidden_size
    shapes = [("ln_ih_weight", GH, 1.0), ("ln_ih_bias", GH, 0.0), ("ln_hh_weight", GH, 1.0), ("ln_hh_bias", GH, 0.0)]
    if kind.has_cell_state:
        shapes += [("ln_c_weight", hidden_size, 1.0), ("ln_c_bias", hidden_size, 0.0)]
    return shapes


def _run_recurrence(kind, x: Tensor, h0: Tensor, c0: Optional[Tensor], w_ih, w_hh, b_ih, b_hh, ln_p: dict,
                    lengths, reverse: bool, resets, zoneout, backend: Optional[str]):
    """One LayerNorm layer-direction over x [T, B, I] -> (output [T, B, H], h_n, c_n or None)."""
    xg, recurrent_bias = ln.layer_norm_gates(kind, x, w_ih, b_ih, b_hh, ln_p["ln_ih_weight"], ln_p["ln_ih_bias"],
                                             ln_p["ln_hh_bias"])
    inputs = ln.LayerNormInputs(xg, h0, c0, w_hh, recurrent_bias, ln_p["ln_hh_weight"], ln_p.get("ln_c_weight"),
                                ln_p.get("ln_c_bias"), lengths, reverse, resets=resets, zoneout=zoneout)
    return get_backend(backend, xg.device, xg.dtype).run_layer_norm(kind, inputs)


class _FusedLayerNormRNNBase(_FusedRNNBase):
    """A FusedLSTM/FusedGRU whose layer-directions run the LayerNorm recurrence."""

    def __init__(self, mode: str, *args, **kwargs):
        if kwargs.get("proj_size", 0):
            raise ValueError(f"{type(self).__name__}: proj_size is not supported by the LayerNorm cells")
        super().__init__(mode, *args, **kwargs)
        factory = {"device": self._flat_weights[0].device, "dtype": self._flat_weights[0].dtype}
        self._ln_names: List[str] = []
        for layer in range(self.num_layers):
            for sfx in ([""] + (["_reverse"] if self.bidirectional else [])):
                for name, size, _ in _layer_norm_shapes(self._kind, self.hidden_size):
                    full = f"{name}_l{layer}{sfx}"
                    self.register_parameter(full, nn.Parameter(torch.empty(size, **factory)))
                    self._ln_names.append(full)
        self._reset_layer_norm()

    def _reset_layer_norm(self) -> None:
        with torch.no_grad():
            for full in getattr(self, "_ln_names", ()):
                weight = full.startswith(("ln_ih_weight", "ln_hh_weight", "ln_c_weight"))
                getattr(self, full).fill_(1.0 if weight else 0.0)

    def reset_parameters(self) -> None:
        """nn.*'s uniform(±1/sqrt(hidden_size)) for the weights and biases; ones/zeros for the LayerNorm ones."""
        super().reset_parameters()
        self._reset_layer_norm()

    def _run_direction(self, layer, direction, x, h0, c0, lengths, resets, backend):
        w_ih, w_hh, b_ih, b_hh, _ = self._layer_params(layer, direction)
        sfx = "_reverse" if direction == 1 else ""
        ln_p = {name: getattr(self, f"{name}_l{layer}{sfx}")
                for name, _, _ in _layer_norm_shapes(self._kind, self.hidden_size)}
        return _run_recurrence(self._kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_p, lengths, direction == 1, resets,
                               self._zoneout_masks(x), backend)

    def forward(self, input, hx=None, *, resets: Optional[Tensor] = None):
        if _onnx_exporting():
            raise RuntimeError(f"{type(self).__name__}: LayerNorm cells cannot be exported to ONNX (its RNN ops have "
                               "no LayerNorm)")
        return super().forward(input, hx, resets=resets)

    @classmethod
    def from_module(cls, module, backend=None):
        raise TypeError(f"{cls.__name__} has no nn.* twin to copy from")

    def to_torch(self):
        raise TypeError(f"{type(self).__name__} has no nn.* twin (nn.LSTM/GRU have no LayerNorm)")


_LN_DOC = """
    LayerNorm parameters (module docstring of rnnfused.layer_norm): ``ln_ih_weight_l{k}``, ``ln_ih_bias_l{k}``,
    ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}`` [G·H]CELL_STATE, with ``_reverse`` for the reverse direction;
    ones/zeros.
"""


class FusedLayerNormLSTM(_FusedLayerNormRNNBase):
    __doc__ = """LayerNorm LSTM with ``nn.LSTM``'s constructor, inputs and outputs (no proj_size):
    ``gates = LN_ih(x W_ihᵀ) + LN_hh(h W_hhᵀ) + b_ih + b_hh``, ``c' = σ(f)·c + σ(i)·tanh(g)``,
    ``h' = σ(o)·tanh(LN_c(c'))``.
""" + _LN_DOC.replace("CELL_STATE", ", ``ln_c_weight_l{k}``, ``ln_c_bias_l{k}`` [H]") + _SEQUENCE_ARGS + _SEQUENCE_IO + """
    Example::

        >>> lstm = FusedLayerNormLSTM(10, 20, num_layers=2, batch_first=True)
        >>> out, (h_n, c_n) = lstm(torch.randn(3, 5, 10))
        >>> out.shape, h_n.shape, c_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
    """

    _MODE = "LSTM"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__("LSTM", *args, backend=backend, **kwargs)

    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden


class FusedLayerNormGRU(_FusedLayerNormRNNBase):
    __doc__ = """LayerNorm GRU with ``nn.GRU``'s constructor, inputs and outputs:
    ``a = LN_ih(x W_ihᵀ) + b_ih``, ``b = LN_hh(h W_hhᵀ) + b_hh``, ``r = σ(a_r + b_r)``, ``z = σ(a_z + b_z)``,
    ``n = tanh(a_n + r·b_n)``, ``h' = (1 − z)·n + z·h``.
""" + _LN_DOC.replace("CELL_STATE", "") + _SEQUENCE_ARGS + _SEQUENCE_IO + """
    Example::

        >>> gru = FusedLayerNormGRU(10, 20, bidirectional=True)
        >>> out, h_n = gru(torch.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        (torch.Size([5, 3, 40]), torch.Size([2, 3, 20]))
    """

    _MODE = "GRU"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        _no_proj_size(kwargs)
        super().__init__("GRU", *args, backend=backend, **kwargs)


# --------------------------------------------------------------------------------------------------------- cells
class _FusedLayerNormCellBase(_FusedCellBase):
    """One step of a LayerNorm cell: the layer's recurrence op with one step. Parameters: nn.*Cell's plus
    ``ln_ih_weight``, ``ln_ih_bias``, ``ln_hh_weight``, ``ln_hh_bias`` [G·H] (and ``ln_c_weight``, ``ln_c_bias`` [H]
    for the LSTM cell), ones/zeros."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, backend=backend, device=device, dtype=dtype)
        for name, size, value in _layer_norm_shapes(self._kind, hidden_size):
            self.register_parameter(name, nn.Parameter(torch.full((size,), value, device=device, dtype=dtype)))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            for name, _, value in _layer_norm_shapes(self._kind, self.hidden_size):
                if name in self._parameters:
                    self._parameters[name].fill_(value)

    def forward(self, input: Tensor, hx=None):
        if _onnx_exporting():
            raise RuntimeError(f"{type(self).__name__}: LayerNorm cells cannot be exported to ONNX")
        return super().forward(input, hx)

    @classmethod
    def from_module(cls, cell, backend=None):
        raise TypeError(f"{cls.__name__} has no nn.* twin to copy from")

    def to_torch(self):
        raise TypeError(f"{type(self).__name__} has no nn.* twin (nn.*Cell have no LayerNorm)")

    def _step(self, kind: CellKind, input: Tensor, states: Sequence[Tensor]) -> List[Tensor]:
        """input [B, I], states [B, H] each -> the new states (the recurrence op over one step)."""
        w_ih, w_hh, b_ih, b_hh = self._weights()
        check_cell_inputs(input, states, self.input_size, self.hidden_size, w_ih)
        c = states[1] if kind.has_cell_state else None
        backend = "reference" if input.size(0) == 0 or self.hidden_size == 0 else self.backend
        ln_p = {name: getattr(self, name) for name, _, _ in _layer_norm_shapes(kind, self.hidden_size)}
        _, h_n, c_n = _run_recurrence(kind, input.unsqueeze(0), states[0], c, w_ih, w_hh, b_ih, b_hh, ln_p, None,
                                      False, None, None, backend)
        return [h_n, c_n] if kind.has_cell_state else [h_n]


class FusedLayerNormLSTMCell(_FusedLayerNormCellBase):
    __doc__ = """One LayerNorm LSTM step (equations of :class:`FusedLayerNormLSTM`) with ``nn.LSTMCell``'s constructor,
    inputs and outputs: ``h', c' = cell(x, (h, c))``.

    Example::

        >>> cell = FusedLayerNormLSTMCell(10, 20)
        >>> h, c = cell(torch.randn(3, 10))
        >>> h.shape
        torch.Size([3, 20])
    """

    _MODE = "LSTM"
    _NAME = "LSTMCell"


class FusedLayerNormGRUCell(_FusedLayerNormCellBase):
    __doc__ = """One LayerNorm GRU step (equations of :class:`FusedLayerNormGRU`) with ``nn.GRUCell``'s constructor,
    inputs and outputs: ``h' = cell(x, h)``.

    Example::

        >>> cell = FusedLayerNormGRUCell(10, 20)
        >>> cell(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _MODE = "GRU"
    _NAME = "GRUCell"
