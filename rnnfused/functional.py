"""One layer-direction of an LSTM, GRU or Elman RNN over a whole sequence, on any backend.

    output, (h_n, c_n) = rnnfused.functional.lstm(x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
    output, h_n        = rnnfused.functional.gru(x, h0, w_ih, w_hh, b_ih, b_hh, batch_first=True)
    output, h_n        = rnnfused.functional.rnn(x, None, w_ih, w_hh, nonlinearity="relu", lengths=[5, 3])

Shapes: ``input`` [T, B, I] ([B, T, I] with ``batch_first``); states [B, H] ([B, proj_size] for an LSTM's h
with ``w_hr``); weights as in ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (``w_ih`` [G*H, I], ``w_hh`` [G*H, H_out], biases
[G*H], ``w_hr`` [proj_size, H]). ``hx=None`` means zero initial states. ``lengths`` ([B] ints in [1, T], any order)
gives each sequence's length: padded steps produce zeros and leave the state alone, so ``h_n`` is each sequence's
state after its own last step (first step with ``reverse=True``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import backends
from ._cells import CellKind, cell_kind
from ._ops import LayerInputs

__all__ = ["lstm", "gru", "rnn", "run_layer"]

Lengths = Union[Tensor, Sequence[int], None]


def _as_lengths(lengths: Lengths, batch: int, steps: int) -> Optional[Tensor]:
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape [{batch}] (one length per batch row), got {list(lengths.shape)}")
        lengths = lengths.detach().to("cpu", torch.int64)
        # Value checks read the data; under torch.compile the op checks them instead (no data-dependent guard).
        if not torch.compiler.is_compiling() and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(f"lengths must lie in [1, seq_len={steps}], got {lengths.tolist()}")
        return lengths
    values = [int(v) for v in lengths]
    if len(values) != batch:
        raise ValueError(f"lengths must have shape [{batch}] (one length per batch row), got [{len(values)}]")
    if any(v < 1 or v > steps for v in values):
        raise ValueError(f"lengths must lie in [1, seq_len={steps}], got {values}")
    return torch.tensor(values, dtype=torch.int64)


def _check_tensor(name: str, t: Optional[Tensor], shape: Sequence[int], like: Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a Tensor, got {type(t).__name__}")
    if list(t.shape) != list(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    # Under autocast the ops cast their floating inputs to one dtype (rnnfused._ops), as nn.LSTM does.
    if t.dtype != like.dtype and not torch.is_autocast_enabled(like.device.type):
        raise ValueError(f"{name} must have dtype {like.dtype} like input, got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{name} must be on {like.device} like input, got {t.device}")


def check_layer_inputs(kind: CellKind, x: LayerInputs) -> None:
    """Validates one layer-direction's arguments; errors name the argument and what was expected."""
    inp = x.input
    if not isinstance(inp, Tensor):
        raise ValueError(f"input must be a Tensor, got {type(inp).__name__}")
    if inp.dim() != 3:
        raise ValueError(f"input must be 3-D [seq_len, batch, input_size], got {inp.dim()}-D {list(inp.shape)}")
    if not inp.dtype.is_floating_point:
        raise ValueError(f"input must have a floating dtype (float64/32/16, bfloat16), got {inp.dtype}")
    T, B, I = inp.shape
    if T == 0 or B == 0:
        raise ValueError(f"input must have seq_len > 0 and batch > 0, got shape {list(inp.shape)}")
    if not isinstance(x.w_hh, Tensor) or x.w_hh.dim() != 2 or x.w_hh.shape[0] % kind.gates:
        shape = list(x.w_hh.shape) if isinstance(x.w_hh, Tensor) else type(x.w_hh).__name__
        raise ValueError(f"w_hh must be 2-D [{kind.gates}*hidden_size, hidden_size], got {shape}")
    H = x.w_hh.shape[0] // kind.gates
    H_out = x.w_hh.shape[1]
    _check_tensor("w_ih", x.w_ih, (kind.gates * H, I), inp)
    _check_tensor("w_hh", x.w_hh, (kind.gates * H, H_out), inp)
    _check_tensor("b_ih", x.b_ih, (kind.gates * H,), inp)
    _check_tensor("b_hh", x.b_hh, (kind.gates * H,), inp)
    if (x.b_ih is None) != (x.b_hh is None):
        raise ValueError("b_ih and b_hh must be given together or both be None")
    _check_tensor("w_hr", x.w_hr, (H_out, H), inp)
    if x.w_hr is None and H_out != H:
        raise ValueError(f"w_hh has {H_out} columns but hidden_size is {H}; a projection needs w_hr")
    _check_tensor("h0", x.h0, (B, H_out), inp)
    if kind.has_cell_state:
        _check_tensor("c0", x.c0, (B, H), inp)


def run_layer(kind: CellKind, x: LayerInputs, backend: Optional[str] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Runs one validated layer-direction (time-major) on the selected backend: (output, h_n, c_n or None)."""
    return backends.get_backend(backend, x.input.device, x.input.dtype).run(kind, x)


def _layer(kind: CellKind, input: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
           b_ih: Optional[Tensor], b_hh: Optional[Tensor], w_hr: Optional[Tensor], lengths: Lengths, reverse: bool,
           batch_first: bool, backend: Optional[str]):
    if isinstance(input, Tensor) and input.dim() == 3 and batch_first:
        input = input.transpose(0, 1)
    if isinstance(input, Tensor) and input.dim() == 3 and isinstance(w_hh, Tensor) and w_hh.dim() == 2:
        B, H_out, H = input.shape[1], w_hh.shape[1], w_hh.shape[0] // kind.gates
        h0 = input.new_zeros(B, H_out) if h0 is None else h0
        c0 = input.new_zeros(B, H) if (c0 is None and kind.has_cell_state) else c0
    x = LayerInputs(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, None, bool(reverse))
    check_layer_inputs(kind, x)
    x = x._replace(lengths=_as_lengths(lengths, input.shape[1], input.shape[0]))
    output, h_n, c_n = run_layer(kind, x, backend)
    if batch_first:
        output = output.transpose(0, 1)
    return output, h_n, c_n


def lstm(input: Tensor, hx: Optional[Tuple[Tensor, Tensor]], w_ih: Tensor, w_hh: Tensor,
         b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None, w_hr: Optional[Tensor] = None, *,
         lengths: Lengths = None, reverse: bool = False, batch_first: bool = False,
         backend: Optional[str] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
    """LSTM layer-direction: ``output, (h_n, c_n)``; ``w_hr`` [proj_size, H] makes it an LSTMP."""
    if hx is None:
        h0 = c0 = None
    elif isinstance(hx, (tuple, list)) and len(hx) == 2:
        h0, c0 = hx
    else:
        raise ValueError("hx must be None or a tuple (h0, c0)")
    output, h_n, c_n = _layer(cell_kind("lstm"), input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                              batch_first, backend)
    return output, (h_n, c_n)


def gru(input: Tensor, hx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
        b_hh: Optional[Tensor] = None, *, lengths: Lengths = None, reverse: bool = False, batch_first: bool = False,
        backend: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    """GRU layer-direction: ``output, h_n``."""
    output, h_n, _ = _layer(cell_kind("gru"), input, hx, None, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse,
                            batch_first, backend)
    return output, h_n


def rnn(input: Tensor, hx: Optional[Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
        b_hh: Optional[Tensor] = None, *, nonlinearity: str = "tanh", lengths: Lengths = None, reverse: bool = False,
        batch_first: bool = False, backend: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    """Elman RNN layer-direction (``nonlinearity`` tanh or relu): ``output, h_n``."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    output, h_n, _ = _layer(cell_kind("rnn", nonlinearity), input, hx, None, w_ih, w_hh, b_ih, b_hh, None, lengths,
                            reverse, batch_first, backend)
    return output, h_n
