"""The cell kinds and their sizes: one table that the op registration, backends and modules share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["CellKind", "CELL_KINDS", "cell_kind", "cell_state_dtype"]


@dataclass(frozen=True)
class CellKind:
    name: str                     # op name in torch.ops.rnnfused: lstm, gru, rnn_tanh, rnn_relu
    gates: int                    # G: gate blocks in W_ih / W_hh
    saved_per_unit: int           # S: activations the forward saves per hidden unit for backward
    has_cell_state: bool          # LSTM's c
    nonlinearity: Optional[str]   # Elman RNN only: tanh / relu


CELL_KINDS = {
    "lstm": CellKind("lstm", 4, 4, True, None),
    "gru": CellKind("gru", 3, 4, False, None),
    "rnn_tanh": CellKind("rnn_tanh", 1, 0, False, "tanh"),
    "rnn_relu": CellKind("rnn_relu", 1, 0, False, "relu"),
}


def cell_kind(mode: str, nonlinearity: str = "tanh") -> CellKind:
    """The kind for an nn.RNNBase mode ('LSTM', 'GRU', 'RNN_TANH', 'RNN_RELU') or an op name."""
    key = mode.lower()
    if key == "rnn":
        key = f"rnn_{nonlinearity}"
    if key not in CELL_KINDS:
        raise ValueError(f"unknown cell kind {mode!r}; expected one of {sorted(CELL_KINDS)}")
    return CELL_KINDS[key]


def cell_state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of LSTM's saved cell states and of the pointwise arithmetic: float64 or float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
