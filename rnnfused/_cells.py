"""The cell registry of the Python side: one description per cell, every per-cell table derived from it.

Each :class:`CellKind` says what a cell is (its op name, gate count, what its forward saves for backward, whether it has
a cell state or a projection), its reference step (rnnfused/reference.py) and its module classes. The op schemas and
fakes (rnnfused/_fakes.py), the autograd formulas, the backends' argument lists (rnnfused/_inputs.py), the Triton
cell ids (``CELL_IDS``, in registry order), the Triton compile check and the benchmark cells all read this table. The
C++ side has its own list (csrc/common/cells.h: math and traits in C++); tests/test_cell_registry.py checks that the two
agree through the registered op schemas.

A new cell: its math in C++ (csrc/common/cell_math.h + csrc/common/cells.h) and Triton (triton_kernels/cell_math.py),
its reference step (rnnfused/reference.py), one entry below, its module classes (rnnfused/modules.py), its tests.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch import nn

from . import reference

__all__ = ["CellKind", "CELL_KINDS", "CELL_IDS", "cell_kind", "cell_state_dtype"]


@dataclass(frozen=True)
class CellKind:
    name: str                     # op name in torch.ops.rnnfused (and key of CELL_KINDS): lstm, gru, rnn_tanh, …
    mode: str                     # nn.RNNBase mode of its modules: LSTM, GRU, RNN_TANH, RNN_RELU
    gates: int                    # G: gate blocks in W_ih / W_hh
    saved_per_unit: int           # S: activations the forward saves per hidden unit for backward
    has_cell_state: bool          # LSTM's c: the ops take c0 and return c_n and the cell states
    has_projection: bool          # proj_size: the ops take w_hr (h' = r W_hrᵀ)
    nonlinearity: Optional[str]   # Elman RNN only: tanh / relu
    split_recurrent_grad: bool    # the recurrent pre-activations' gradient differs from the input ones' (GRU's r·)
    step: Callable                # reference step: step(xg, state, w_hh, b_hh, w_hr) -> new state (state[0] is h)
    torch_module: type            # its nn.* twins: the modules' parameters, errors and conversions follow them
    torch_cell: type
    module: str                   # class names of its fused modules in rnnfused.modules
    cell_module: str
    # Its LayerNorm variant (rnnfused/_layer_norm_ops.py), for the cells that have one: the reference step
    # step(xg, state, w_hh, b_hh, ln_hh_weight, ln_c_weight, ln_c_bias) -> new state, and the module classes'
    # names in rnnfused.layer_norm.
    layer_norm_step: Optional[Callable] = None
    layer_norm_module: Optional[str] = None
    layer_norm_cell_module: Optional[str] = None

    @property
    def state_size(self) -> int:
        """Tensors in the recurrent state: (h, c) for the LSTM, (h,) otherwise."""
        return 2 if self.has_cell_state else 1

    @property
    def family(self) -> str:
        """The nn class family: lstm, gru or rnn (rnn_tanh and rnn_relu are both nn.RNN)."""
        return self.torch_module.__name__.lower()


_KINDS = (
    CellKind("lstm", "LSTM", 4, 4, True, True, None, False, reference.lstm_cell_step, nn.LSTM, nn.LSTMCell,
             "FusedLSTM", "FusedLSTMCell", reference.layer_norm_lstm_step, "FusedLayerNormLSTM",
             "FusedLayerNormLSTMCell"),
    CellKind("gru", "GRU", 3, 4, False, False, None, True, reference.gru_cell_step, nn.GRU, nn.GRUCell,
             "FusedGRU", "FusedGRUCell", reference.layer_norm_gru_step, "FusedLayerNormGRU",
             "FusedLayerNormGRUCell"),
    CellKind("rnn_tanh", "RNN_TANH", 1, 0, False, False, "tanh", False,
             functools.partial(reference.rnn_cell_step, nonlinearity="tanh"), nn.RNN, nn.RNNCell,
             "FusedRNN", "FusedRNNCell"),
    CellKind("rnn_relu", "RNN_RELU", 1, 0, False, False, "relu", False,
             functools.partial(reference.rnn_cell_step, nonlinearity="relu"), nn.RNN, nn.RNNCell,
             "FusedRNN", "FusedRNNCell"),
)

CELL_KINDS: Dict[str, CellKind] = {k.name: k for k in _KINDS}
CELL_IDS: Dict[str, int] = {name: i for i, name in enumerate(CELL_KINDS)}  # compile-time cell ids of the Triton kernels
_BY_MODE: Dict[str, CellKind] = {k.mode: k for k in _KINDS}


def cell_kind(mode: str, nonlinearity: str = "tanh") -> CellKind:
    """The kind for an nn.RNNBase mode ('LSTM', 'GRU', 'RNN_TANH', 'RNN_RELU'), an op name ('lstm', 'rnn_relu', …)
    or 'rnn' with a nonlinearity."""
    if mode in _BY_MODE:
        return _BY_MODE[mode]
    key = mode.lower()
    if key == "rnn":
        key = f"rnn_{nonlinearity}"
    if key not in CELL_KINDS:
        raise ValueError(f"unknown cell kind {mode!r}; expected one of {sorted(CELL_KINDS)}")
    return CELL_KINDS[key]


def cell_state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of LSTM's saved cell states and of the pointwise arithmetic: float64 or float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
