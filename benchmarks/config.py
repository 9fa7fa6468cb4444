"""One benchmark configuration (what is measured) and the names the CLI, CSV and plots use for its fields."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from rnnfused._cells import CELL_KINDS, CellKind, cell_kind

__all__ = ["BenchConfig", "CELLS", "DTYPES", "MODES", "LENGTHS", "parse_dtype", "dtype_name"]

# The nn families of the cell registry (lstm, gru, rnn; rnn = Elman RNN with tanh, nn.RNN's default).
CELLS = tuple(dict.fromkeys(kind.family for kind in CELL_KINDS.values()))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
MODES = ("fwd", "fwdbwd")                                     # forward under no_grad; forward + backward
# full: every sequence has seq_len steps (a padded tensor); var: a PackedSequence whose lengths are drawn uniformly
# from [ceil(seq_len / 4), seq_len] (seeded), for nn.* and rnnfused alike.
LENGTHS = ("full", "var")
_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
            "float64": "fp64", "double": "fp64"}


def parse_dtype(name: str) -> str:
    """The short dtype name (fp32, bf16, fp16, fp64) for a short or long spelling."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return key


def dtype_name(dtype: torch.dtype) -> str:
    """The short name (fp32, ...) of a torch dtype."""
    return next(k for k, v in DTYPES.items() if v == dtype)


@dataclass(frozen=True, order=True)
class BenchConfig:
    """A full layer (input projection included) of ``cell`` run over ``seq_len`` steps in one ``mode``.

    Shapes follow nn.*'s time-major layout: input [seq_len, batch, input_size], output [seq_len, batch, D*hidden];
    with ``lengths="var"`` both are PackedSequences of ``batch`` sequences of at most ``seq_len`` steps.
    ``input_size`` defaults to ``hidden`` in the presets (as in cuDNN's own RNN benchmarks).
    """

    cell: str
    dtype: str
    batch: int
    hidden: int
    seq_len: int
    mode: str
    input_size: int = 0           # 0: same as hidden
    layers: int = 1
    bidirectional: bool = False
    lengths: str = "full"         # see LENGTHS

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.lengths not in LENGTHS:
            raise ValueError(f"lengths must be one of {LENGTHS}, got {self.lengths!r}")
        for name in ("batch", "hidden", "seq_len", "layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.input_size == 0:
            object.__setattr__(self, "input_size", self.hidden)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def shape_key(self) -> tuple:
        """Everything but the mode: the configs that share weights, inputs and a float64 truth."""
        return (self.cell, self.dtype, self.batch, self.hidden, self.seq_len, self.input_size, self.layers,
                self.bidirectional, self.lengths)

    @property
    def id(self) -> str:
        """``lstm-bf16-B8-H1024-T512-fwd`` (plus ``-I..``, ``-L..``, ``-bi``, ``-var`` when not the defaults)."""
        parts = [self.cell, self.dtype, f"B{self.batch}", f"H{self.hidden}", f"T{self.seq_len}"]
        if self.input_size != self.hidden:
            parts.append(f"I{self.input_size}")
        if self.layers != 1:
            parts.append(f"L{self.layers}")
        if self.bidirectional:
            parts.append("bi")
        if self.lengths == "var":
            parts.append("var")
        parts.append(self.mode)
        return "-".join(parts)

    @property
    def kind(self) -> CellKind:
        """The cell registry's entry for ``cell`` (``rnn``: the tanh Elman cell, nn.RNN's default)."""
        return cell_kind(self.cell)

    @property
    def packed(self) -> bool:
        """Whether the input is a PackedSequence of variable lengths."""
        return self.lengths == "var"

    def fields(self) -> dict:
        return asdict(self)
