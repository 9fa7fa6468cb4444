"""Input checks of the Python layer, in one place (a leaf module: the functional API, the modules and cells, the fake
functions and the Triton ops use it; the C++ ops check raw calls again in csrc/sequence/layer_args.cpp).

Errors name the argument and what was expected. Where nn.* has the same check (the modules and cells), the exception
class and the text are nn.*'s, so code that matches them keeps working.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ._cells import CellKind, cell_state_dtype
from ._inputs import LayerInputs

__all__ = ["Lengths", "check_tensor", "check_layer_inputs", "as_lengths", "check_op_lengths", "check_saved",
           "check_same_device", "check_module_devices", "check_cell_rank", "check_cell_inputs", "check_resets",
           "check_zoneout"]

Lengths = Union[Tensor, Sequence[int], None]


def _autocasting(t: Tensor) -> bool:
    return torch.is_autocast_enabled(t.device.type)


# ------------------------------------------------------------------------------------- one layer-direction (functional)
def check_tensor(name: str, t: Optional[Tensor], shape: Sequence[int], like: Tensor) -> None:
    """``t`` (when given) is a tensor of ``shape`` with ``like``'s dtype and device (ValueError otherwise)."""
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a Tensor, got {type(t).__name__}")
    if list(t.shape) != list(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    # Under autocast the ops cast their floating inputs to one dtype (rnnfused/_autocast.py), as nn.LSTM does.
    if t.dtype != like.dtype and not _autocasting(like):
        raise ValueError(f"{name} must have dtype {like.dtype} like input, got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{name} must be on {like.device} like input, got {t.device}")


def check_layer_inputs(kind: CellKind, x: LayerInputs) -> None:
    """Validates one layer-direction's arguments (ValueError naming the argument and what was expected)."""
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
    check_tensor("w_ih", x.w_ih, (kind.gates * H, I), inp)
    check_tensor("w_hh", x.w_hh, (kind.gates * H, H_out), inp)
    check_tensor("b_ih", x.b_ih, (kind.gates * H,), inp)
    check_tensor("b_hh", x.b_hh, (kind.gates * H,), inp)
    if (x.b_ih is None) != (x.b_hh is None):
        raise ValueError("b_ih and b_hh must be given together or both be None")
    if x.w_hr is not None and not kind.has_projection:
        raise ValueError(f"w_hr (proj_size) is not supported by the {kind.name} cell")
    check_tensor("w_hr", x.w_hr, (H_out, H), inp)
    if x.w_hr is None and H_out != H:
        raise ValueError(f"w_hh has {H_out} columns but hidden_size is {H}; a projection needs w_hr")
    check_tensor("h0", x.h0, (B, H_out), inp)
    if kind.has_cell_state:
        check_tensor("c0", x.c0, (B, H), inp)
    check_resets(x.resets, T, B, inp.device, x.lengths is not None)
    check_zoneout(kind, x.zoneout, (T, B, H), inp, x.w_hr is not None)


def check_zoneout(kind: CellKind, zoneout: Optional[Tensor], steps_batch_hidden: Tuple[int, int, int], like: Tensor,
                  projection: bool) -> None:
    """``zoneout``: None, or keep-masks [S, T, B, H] (S = 2 for LSTM: h and c; 1 for GRU) in the cell dtype of
    ``like``'s dtype, on its device; not for Elman RNNs and not with a projection."""
    if zoneout is None:
        return
    if kind.name not in ("lstm", "gru"):
        raise ValueError(f"zoneout is supported by LSTM and GRU layers only, not {kind.name}")
    if projection:
        raise ValueError("zoneout cannot be combined with a projection (proj_size)")
    S = 2 if kind.has_cell_state else 1
    want = (S, *steps_batch_hidden)
    if not isinstance(zoneout, Tensor) or zoneout.shape != want:
        got = list(zoneout.shape) if isinstance(zoneout, Tensor) else type(zoneout).__name__
        raise ValueError(f"zoneout must have shape {list(want)} ([states, seq_len, batch, hidden_size]), got {got}")
    dtype = cell_state_dtype(like.dtype)
    if zoneout.dtype != dtype:
        raise ValueError(f"zoneout must have dtype {dtype} (the cell dtype of {like.dtype} input), got {zoneout.dtype}")
    if zoneout.device != like.device:
        raise ValueError(f"zoneout must be on {like.device} like input, got {zoneout.device}")


def check_resets(resets: Optional[Tensor], steps: int, batch: int, device: torch.device, with_lengths: bool) -> None:
    """``resets``: None, or a bool tensor [seq_len, batch] (time-major) on input's device, never with lengths."""
    if resets is None:
        return
    if not isinstance(resets, Tensor) or resets.dtype != torch.bool:
        got = resets.dtype if isinstance(resets, Tensor) else type(resets).__name__
        raise ValueError(f"resets must be a bool tensor, got {got}")
    if resets.shape != (steps, batch):
        raise ValueError(f"resets must have shape [seq_len={steps}, batch={batch}], got {list(resets.shape)}")
    if resets.device != device:
        raise ValueError(f"resets must be on {device} like input, got {resets.device}")
    if with_lengths:
        raise ValueError("resets cannot be combined with lengths (PackedSequence input): give one or the other")


def as_lengths(lengths: Lengths, batch: int, steps: int) -> Optional[Tensor]:
    """The functional API's ``lengths`` (a tensor or a sequence of ints) as an int64 CPU tensor [B] with values checked
    to lie in [1, steps]. (A CUDA tensor given during CUDA-graph capture, when it cannot be read, is passed on as it
    is: the op then requires it on the input's device.)"""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape [{batch}] (one length per batch row), got {list(lengths.shape)}")
        if lengths.is_cuda and torch.cuda.is_current_stream_capturing():
            return lengths.detach().to(torch.int64)  # cannot be read while capturing: used as given, unchecked
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


# ----------------------------------------------------------------------------------------------- raw ops (Triton, fakes)
def check_op_lengths(op: str, lengths: Optional[Tensor], batch: int, steps: int, device: torch.device) -> None:
    """A raw op's ``lengths`` (RuntimeError): None, or int64 [B] on the CPU (values checked to lie in [1, steps]) or
    already on the input's ``device`` (values NOT checked: reading them would synchronize with the GPU and break
    CUDA-graph capture; the modules and the functional API check values before they move lengths to the device).
    Out-of-range device values give wrong rows, never out-of-bounds accesses: every kernel only compares
    t < lengths[b] and never indexes memory with a length."""
    if lengths is None:
        return
    if (lengths.device.type != "cpu" and lengths.device != device) or lengths.dtype != torch.int64 or \
            lengths.shape != (batch,):
        raise RuntimeError(f"{op}: lengths must be an int64 tensor of shape [{batch}] on the CPU or on {device} like "
                           f"input, got {lengths.dtype} {list(lengths.shape)} on {lengths.device}")
    if lengths.device.type == "cpu" and not torch._subclasses.fake_tensor.is_fake(lengths):  # eager CPU values only
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > steps:
            raise RuntimeError(f"{op}: lengths must lie in [1, seq_len={steps}], got values in [{lo}, {hi}]")


def check_saved(op: str, name: str, t: Tensor, shape: Sequence[int], dtype: torch.dtype, device) -> Tensor:
    """A backward op's tensor from the forward (output, saved, cells, upstream gradients): returned contiguous."""
    if not isinstance(t, Tensor) or list(t.shape) != list(shape) or t.dtype != dtype or t.device != device:
        got = f"{t.dtype} {list(t.shape)} on {t.device}" if isinstance(t, Tensor) else type(t).__name__
        raise RuntimeError(f"{op}: {name} must be {dtype} {list(shape)} on {device}, got {got}")
    return t.contiguous()


def check_same_device(op: str, x: LayerInputs) -> None:
    """Every tensor of a layer on input's device (RuntimeError). The fake functions need it: mixed devices would
    otherwise land on the Meta kernel and 'succeed' without computing."""
    for name in ("h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"):
        t = getattr(x, name)
        if t is not None and t.device != x.input.device:
            raise RuntimeError(f"{op}: {name} must be on {x.input.device} like input, got {t.device}")
    # lengths: on the CPU (value-checked by the op) or already on input's device (not value-checked: no GPU sync).
    if x.lengths is not None and x.lengths.device.type != "cpu" and x.lengths.device != x.input.device:
        raise RuntimeError(f"{op}: lengths must be on the CPU or on {x.input.device} like input, got "
                           f"{x.lengths.device}")
    for name in ("resets", "zoneout"):
        t = getattr(x, name)
        if t is not None and t.device != x.input.device:
            raise RuntimeError(f"{op}: {name} must be on {x.input.device} like input, got {t.device}")


# ---------------------------------------------------------------------------------------------------- modules
def check_module_devices(data: Tensor, weight: Tensor, states: Sequence[Tuple[str, Optional[Tensor]]]) -> None:
    """Device and dtype agreement of a sequence module's input, parameters and initial states, which nn.* leaves to
    its kernels: RuntimeError as there, with nn.*'s text for the device errors. ``states``: (name, tensor) pairs."""
    if data.device != weight.device:
        raise RuntimeError("Input and parameter tensors are not at the same device, found input tensor at "
                           f"{data.device} and parameter tensor at {weight.device}")
    for name, t in states:
        if t is None:
            continue
        if t.device != data.device:
            raise RuntimeError(f"Input and hidden tensors are not at the same device, found input tensor at "
                               f"{data.device} and {name} at {t.device}")
        if t.dtype != data.dtype and not _autocasting(data):
            raise RuntimeError(f"Expected {name} to have dtype {data.dtype} like input, got {t.dtype}")


# ------------------------------------------------------------------------------------------------------ cells
def check_cell_rank(cell_name: str, input: Tensor, states: Sequence[Tuple[Optional[int], Optional[Tensor]]]) -> bool:
    """nn.*Cell's rank checks (ValueError, nn.*'s text); returns whether the input is batched. ``states``:
    (index in hx or None, tensor) pairs."""
    if input.dim() not in (1, 2):
        raise ValueError(f"{cell_name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    for idx, value in states:
        if value is not None and value.dim() not in (1, 2):
            what = f"hx[{idx}]" if idx is not None else "hidden"
            raise ValueError(f"{cell_name}: Expected {what} to be 1D or 2D, got {value.dim()}D instead")
    return input.dim() == 2


def check_cell_inputs(input: Tensor, states: Sequence[Tensor], input_size: int, hidden_size: int,
                      weight: Tensor) -> None:
    """One step's batched input [B, I] and states [B, H] (nn.*Cell's checks, class and text: RuntimeError), then
    dtype and device agreement (RuntimeError naming the tensors)."""
    # The common case in one pass (cell loops run this at every step; dtypes are singletons, compared by identity).
    dtype = input.dtype
    if input.size(1) == input_size and dtype is weight.dtype:
        shape, device = (input.size(0), hidden_size), input.device
        if device == weight.device:
            for t in states:
                if t.shape != shape or t.dtype is not dtype or t.device != device:
                    break
            else:
                return  # every check below passes
    if input.size(1) != input_size:
        raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected {input_size}")
    for i, t in enumerate(states):
        if input.size(0) != t.size(0):
            raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{i} batch size {t.size(0)}")
        if t.size(1) != hidden_size:
            raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {t.size(1)}, expected {hidden_size}")
    autocast = _autocasting(input)
    if input.dtype != weight.dtype and not autocast:
        raise RuntimeError(f"expected input to have dtype {weight.dtype} like the weights, got {input.dtype}")
    for i, t in enumerate(states):
        if t.dtype != input.dtype and not autocast:
            raise RuntimeError(f"expected hidden{i} to have dtype {input.dtype} like input, got {t.dtype}")
    if input.device != weight.device:
        raise RuntimeError(f"expected input on {weight.device} like the weights, got {input.device}")
    for i, t in enumerate(states):
        if t.device != input.device:
            raise RuntimeError(f"expected hidden{i} on {input.device} like input, got {t.device}")
