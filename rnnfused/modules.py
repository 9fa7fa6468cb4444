"""Drop-in replacements for nn.LSTM, nn.GRU, nn.RNN and their single-step cells, computed by the fused ops.

    from rnnfused import FusedLSTM
    lstm = FusedLSTM(256, 512, num_layers=2, bidirectional=True, batch_first=True)   # same args as nn.LSTM
    out, (h_n, c_n) = lstm(x, (h0, c0))                                              # same inputs and outputs

Same constructor, parameter names, shapes, initialisation and ``state_dict`` as ``nn.*`` (they share
``nn.RNNBase``/``nn.RNNCellBase``), plus a keyword ``backend=`` (see rnnfused.backends). Every layer-direction runs
through one fused op; PackedSequence input runs with per-sequence lengths inside the ops (no Python loop over time).

The sequence modules derive from ``nn.RNNBase`` rather than ``nn.LSTM``/``nn.GRU``/``nn.RNN`` because TorchDynamo
refuses to trace instances of those three classes; ``isinstance(m, nn.RNNBase)`` holds, and ``m.mode`` says which.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._cell_ops import cell_step
from ._cells import cell_kind
from ._ops import LayerInputs
from .functional import run_layer

__all__ = ["FusedLSTM", "FusedGRU", "FusedRNN", "FusedLSTMCell", "FusedGRUCell", "FusedRNNCell"]

_TORCH_CLASS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


class _FusedRNNBase(nn.RNNBase):
    """forward() of nn.LSTM / nn.GRU / nn.RNN with each layer-direction computed by a fused op."""

    backend: Optional[str]

    def __init__(self, mode: str, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(mode, *args, **kwargs)
        self.backend = backend

    # ------------------------------------------------------------------------------------------ nn.* interop
    def flatten_parameters(self) -> None:
        """No-op: the fused kernels read the parameters where they are (cuDNN's flat buffer is not needed)."""

    def __setstate__(self, d):
        super().__setstate__(d)
        self.__dict__.setdefault("backend", None)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s

    def _constructor_kwargs(self) -> dict:
        kw = dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                  bias=self.bias, batch_first=self.batch_first, dropout=float(self.dropout),
                  bidirectional=self.bidirectional)
        if self.mode == "LSTM":
            kw["proj_size"] = self.proj_size
        if self.mode.startswith("RNN"):
            kw["nonlinearity"] = "relu" if self.mode == "RNN_RELU" else "tanh"
        return kw

    @classmethod
    def from_module(cls, module: nn.RNNBase, backend: Optional[str] = None):
        """A fused copy of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (same config, weights copied, same device/dtype)."""
        if not isinstance(module, nn.RNNBase):
            raise TypeError(f"from_module expects an nn.RNNBase (nn.LSTM/GRU/RNN), got {type(module).__name__}")
        if _TORCH_CLASS.get(module.mode) is not _TORCH_CLASS[cls._MODE]:
            raise TypeError(f"{cls.__name__}.from_module expects an {_TORCH_CLASS[cls._MODE].__name__}, "
                            f"got mode {module.mode}")
        first = next(module.parameters())
        kw = _FusedRNNBase._constructor_kwargs(module)
        fused = cls(**kw, backend=backend, device=first.device, dtype=first.dtype)
        fused.load_state_dict(module.state_dict())
        fused.train(module.training)
        return fused

    def to_torch(self) -> nn.RNNBase:
        """The equivalent ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with a copy of these weights."""
        first = next(self.parameters())
        m = _TORCH_CLASS[self.mode](**self._constructor_kwargs(), device=first.device, dtype=first.dtype)
        m.load_state_dict(self.state_dict())
        m.train(self.training)
        return m

    # ---------------------------------------------------------------------------------------------- forward
    def _layer_params(self, layer: int, direction: int):
        sfx = "_reverse" if direction == 1 else ""
        get = lambda name: getattr(self, f"{name}_l{layer}{sfx}", None)  # noqa: E731
        w_hr = get("weight_hr") if self.proj_size > 0 else None
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), w_hr

    def _check_states_agree(self, data: Tensor, h0: Tensor, c0: Optional[Tensor]) -> None:
        """dtype and device agreement, which nn.* leaves to its kernels (errors of the same class, clearer text)."""
        weight = self._flat_weights[0]
        if data.device != weight.device:
            raise RuntimeError("Input and parameter tensors are not at the same device, found input tensor at "
                               f"{data.device} and parameter tensor at {weight.device}")
        for name, t in (("hx[0]" if c0 is not None else "hx", h0), ("hx[1]", c0)):
            if t is None:
                continue
            if t.device != data.device:
                raise RuntimeError(f"Input and hidden tensors are not at the same device, found input tensor at "
                                   f"{data.device} and {name} at {t.device}")
            if t.dtype != data.dtype and not torch.is_autocast_enabled(data.device.type):
                raise RuntimeError(f"Expected {name} to have dtype {data.dtype} like input, got {t.dtype}")

    def _run_layers(self, x: Tensor, h0: Tensor, c0: Optional[Tensor], lengths: Optional[Tensor]):
        """x [T, B, I] time-major; h0 [L*D, B, H_out]; c0 [L*D, B, H] -> output [T, B, D*H_out], h_n, c_n."""
        kind = cell_kind(self.mode)
        D = 2 if self.bidirectional else 1
        # An empty batch is valid for nn.* (empty results); the fused ops reject it, the reference handles it.
        # While exporting to ONNX (only LSTMs with proj_size get here, see forward) the reference equations are
        # plain ops that every exporter translates.
        backend = "reference" if x.size(1) == 0 or torch.onnx.is_in_onnx_export() else self.backend
        h_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_params(layer, direction)
                inputs = LayerInputs(layer_input, h0[idx], c0[idx] if c0 is not None else None, w_ih, w_hh, b_ih,
                                     b_hh, w_hr, lengths, direction == 1)
                out, h, c = run_layer(kind, inputs, backend)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        return layer_input, torch.stack(h_n), (torch.stack(c_n) if c0 is not None else None)

    def forward(self, input, hx=None):
        """As ``nn.LSTM.forward`` / ``nn.GRU.forward`` / ``nn.RNN.forward``: same inputs, outputs and errors."""
        if torch.onnx.is_in_onnx_export() and self.proj_size == 0:
            # torch.onnx.export (either exporter) translates nn.*'s own RNN functions to ONNX's LSTM/GRU/RNN ops: run
            # them on these parameters. ONNX's LSTM has no projection, and neither exporter translates nn.LSTM with
            # proj_size (torch 2.13): those run the reference equations instead (see _run_layers).
            return _TORCH_CLASS[self.mode].forward(self, input, hx)
        self._update_flat_weights()
        is_lstm = self.mode == "LSTM"
        D = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        orig_input = input
        is_batched = True
        batch_dim = 0 if self.batch_first else 1
        if isinstance(orig_input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = orig_input
            max_batch = int(batch_sizes[0])
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            name = "RNN" if self.mode.startswith("RNN") else self.mode
            if input.dim() not in (2, 3):
                tensor = " tensor" if name == "RNN" else ""
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{tensor} instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            max_batch = input.size(0) if self.batch_first else input.size(1)
            if hx is not None:
                hx = self._batched_hx(hx, is_batched)
            data = input
        if hx is None:
            zeros = lambda size: torch.zeros(self.num_layers * D, max_batch, size, dtype=data.dtype,  # noqa: E731
                                             device=data.device)
            hx = (zeros(real_hidden), zeros(self.hidden_size)) if is_lstm else zeros(real_hidden)
        self.check_forward_args(data, hx, batch_sizes)
        h0, c0 = hx if is_lstm else (hx, None)
        self._check_states_agree(data, h0, c0)
        if data.size(0) == 0 and batch_sizes is None:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # nn.*'s error

        if batch_sizes is not None:
            # Padded, in the packed (length-sorted) batch order; lengths go into the ops.
            x, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
            out, h_n, c_n = self._run_layers(x, h0, c0, lengths)
            output = PackedSequence(pack_padded_sequence(out, lengths).data, batch_sizes, sorted_indices,
                                    unsorted_indices)
        else:
            x = data.transpose(0, 1) if self.batch_first else data
            out, h_n, c_n = self._run_layers(x, h0, c0, None)
            output = out.transpose(0, 1) if self.batch_first else out
            if not is_batched:
                output = output.squeeze(batch_dim)
                h_n = h_n.squeeze(1)
                c_n = c_n.squeeze(1) if c_n is not None else None
        hidden = (h_n, c_n) if is_lstm else h_n
        return output, self.permute_hidden(hidden, unsorted_indices)

    def _batched_hx(self, hx, is_batched: bool):
        """nn.*'s rank checks of hx for (un)batched input; returns hx with a batch dimension."""
        if self.mode == "LSTM":
            want = 3 if is_batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            return hx if is_batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if is_batched and hx.dim() != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
        if not is_batched and hx.dim() != 2:
            raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
        return hx if is_batched else hx.unsqueeze(1)


class FusedLSTM(_FusedRNNBase):
    """``nn.LSTM`` (incl. ``proj_size``) on the fused ops. Extra keyword: ``backend``."""

    _MODE = "LSTM"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__("LSTM", *args, backend=backend, **kwargs)

    # LSTM's hidden state is a pair: reuse nn.LSTM's own checks and permutation (same messages, same errors).
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden


class FusedGRU(_FusedRNNBase):
    """``nn.GRU`` on the fused ops. Extra keyword: ``backend``."""

    _MODE = "GRU"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, backend=backend, **kwargs)


class FusedRNN(_FusedRNNBase):
    """``nn.RNN`` (``nonlinearity='tanh'|'relu'``) on the fused ops. Extra keyword: ``backend``."""

    _MODE = "RNN_TANH"

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, backend=backend, **kwargs)


# --------------------------------------------------------------------------------------------------- cells
class _FusedCellBase(nn.RNNCellBase):
    """One step of a cell: the single-step cell op (rnnfused/_cell_ops.py: two GEMMs and one fused pointwise pass,
    with its own backward)."""

    _NAME = ""
    _TORCH_CELL = nn.RNNCellBase

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, gates: int,
                 backend: Optional[str] = None, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=gates, device=device, dtype=dtype)
        self.backend = backend

    def __setstate__(self, d):
        super().__setstate__(d)
        self.__dict__.setdefault("backend", None)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", backend={self.backend!r}" if self.backend is not None else "")

    def _kind(self):
        raise NotImplementedError

    @classmethod
    def from_module(cls, cell: nn.RNNCellBase, backend: Optional[str] = None):
        """A fused copy of an ``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell`` (weights copied)."""
        if not isinstance(cell, cls._TORCH_CELL):
            raise TypeError(f"{cls.__name__}.from_module expects an {cls._TORCH_CELL.__name__}, "
                            f"got {type(cell).__name__}")
        first = cell.weight_ih
        extra = {"nonlinearity": cell.nonlinearity} if isinstance(cell, nn.RNNCell) else {}
        fused = cls(cell.input_size, cell.hidden_size, cell.bias, **extra, backend=backend, device=first.device,
                    dtype=first.dtype)
        fused.load_state_dict(cell.state_dict())
        return fused

    def to_torch(self) -> nn.RNNCellBase:
        """The equivalent ``nn.*Cell`` with a copy of these weights."""
        extra = {"nonlinearity": self.nonlinearity} if isinstance(self, FusedRNNCell) else {}
        m = self._TORCH_CELL(self.input_size, self.hidden_size, self.bias, **extra, device=self.weight_ih.device,
                             dtype=self.weight_ih.dtype)
        m.load_state_dict(self.state_dict())
        return m

    def _check_rank(self, input: Tensor, states) -> bool:
        if input.dim() not in (1, 2):
            raise ValueError(f"{self._NAME}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        for idx, value in states:
            if value is not None and value.dim() not in (1, 2):
                what = f"hx[{idx}]" if idx is not None else "hidden"
                raise ValueError(f"{self._NAME}: Expected {what} to be 1D or 2D, got {value.dim()}D instead")
        return input.dim() == 2

    def _step(self, input: Tensor, h: Tensor, c: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """input [B, I], h [B, H], c [B, H] -> (h', c')."""
        # Cell loops call this at every step: each attribute is read once (module attributes are slow in Python).
        w_ih, w_hh, b_ih, b_hh = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        batch, features = input.shape
        if features != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {features} expected {self.input_size}")
        for name, t in (("hx", h), ("cx", c)):
            if t is None:
                continue
            if t.shape != (batch, self.hidden_size):
                raise RuntimeError(f"{name} must have shape [{batch}, {self.hidden_size}] (batch, "
                                   f"hidden_size), got {list(t.shape)}")
            if t.dtype != input.dtype and not torch.is_autocast_enabled(input.device.type):
                raise RuntimeError(f"expected {name} to have dtype {input.dtype} like input, got {t.dtype}")
        if input.dtype != w_ih.dtype and not torch.is_autocast_enabled(input.device.type):
            raise RuntimeError(f"expected input to have dtype {w_ih.dtype} like the weights, got {input.dtype}")
        if input.device != w_ih.device:
            raise RuntimeError(f"expected input on {w_ih.device} like the weights, got {input.device}")
        backend = "reference" if batch == 0 else self.backend  # empty batch: as nn.* (empty results)
        return cell_step(self._kind(), input, h, c, w_ih, w_hh, b_ih, b_hh, backend)


class FusedLSTMCell(_FusedCellBase):
    """``nn.LSTMCell`` on the fused op: ``h', c' = cell(x, (h, c))``."""

    _NAME = "LSTMCell"
    _TORCH_CELL = nn.LSTMCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, gates=4, backend=backend, device=device, dtype=dtype)

    def _kind(self):
        return cell_kind("lstm")

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
        if torch.onnx.is_in_onnx_export():
            return nn.LSTMCell.forward(self, input, hx)  # what the ONNX exporters translate (see _FusedRNNBase)
        is_batched = self._check_rank(input, list(enumerate(hx)) if hx is not None else [])
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = self._step(input, hx[0], hx[1])
        return (h.squeeze(0), c.squeeze(0)) if not is_batched else (h, c)


class _FusedHiddenOnlyCell(_FusedCellBase):
    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return self._TORCH_CELL.forward(self, input, hx)  # what the ONNX exporters translate (see _FusedRNNBase)
        is_batched = self._check_rank(input, [(None, hx)])
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
        elif not is_batched:
            hx = hx.unsqueeze(0)
        h, _ = self._step(input, hx, None)
        return h.squeeze(0) if not is_batched else h


class FusedGRUCell(_FusedHiddenOnlyCell):
    """``nn.GRUCell`` on the fused op: ``h' = cell(x, h)``."""

    _NAME = "GRUCell"
    _TORCH_CELL = nn.GRUCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None):
        super().__init__(input_size, hidden_size, bias, gates=3, backend=backend, device=device, dtype=dtype)

    def _kind(self):
        return cell_kind("gru")


class FusedRNNCell(_FusedHiddenOnlyCell):
    """``nn.RNNCell`` (``nonlinearity='tanh'|'relu'``) on the fused op: ``h' = cell(x, h)``."""

    _NAME = "RNNCell"
    _TORCH_CELL = nn.RNNCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, backend: Optional[str] = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, gates=1, backend=backend, device=device, dtype=dtype)

    def _kind(self):
        return cell_kind("rnn", self.nonlinearity)
