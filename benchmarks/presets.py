"""The grids of the presets (quick / default / full, ...), per device type, and how command-line axes override them.

A preset is a list of blocks; a block is the product of its axes (cells × dtypes × batches × hiddens × seq lens ×
lengths × modes). Blocks are listed in order of interest, so a run cut short by its time budget still has the
headline configs. ``input_size`` is ``hidden`` throughout (as in cuDNN's benchmarks) unless ``--input-size`` says
otherwise. ``lengths="var"`` blocks feed a PackedSequence of lengths drawn from [T/4, T] (see config.LENGTHS) to
nn.* and rnnfused alike: packed input is where nn.LSTM users lose most.

A new preset is one entry in ``PRESETS[device type]`` (``python -m benchmarks --preset NAME`` runs it).

GPU --full budget (H100, < 10 min): 88 shapes (16 of them packed) × 2 modes × ~6 implementations ≈ 1000 timings
of ~0.1 s (20 ms warm-up + 80 ms of repetitions) plus one spot-check call each and one float64 truth per shape; the
run stops starting new shapes after ``time_budget_s`` (the rest is reported as skipped), so it always ends in time.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

from .config import CELLS, MODES, BenchConfig
from .timing import TimerSettings

__all__ = ["Block", "Preset", "PRESETS", "preset", "preset_names", "expand"]


@dataclass(frozen=True)
class Block:
    """The product of its axes (every combination is one config)."""

    cells: Sequence[str]
    dtypes: Sequence[str]
    batches: Sequence[int]
    hiddens: Sequence[int]
    seqs: Sequence[int]
    modes: Sequence[str] = MODES
    lengths: Sequence[str] = ("full",)
    layers: Optional[int] = None          # None: the command line's --layers
    bidirectional: Optional[bool] = None  # None: the command line's --bidirectional


@dataclass(frozen=True)
class Preset:
    """Blocks, timer settings, an optional wall-time budget and the CPU thread count of one preset."""

    blocks: Sequence[Block]
    timer: TimerSettings
    time_budget_s: Optional[float] = None
    threads: Optional[int] = None       # torch.set_num_threads for CPU runs (None: PyTorch's default)


LSTM_GRU = ("lstm", "gru")

# The headline configs (the cuDNN baselines of the design notes: cuDNN's persistent fp16 LSTM and its standard path),
# then a B∈{8,64} × H∈{256,1024} table of LSTM/GRU in bf16 and fp32.
GPU_HEADLINE = [
    Block(["lstm"], ["fp16"], [16], [768], [1024]),
    Block(["lstm"], ["bf16"], [8], [1024], [512]),
    Block(["gru"], ["bf16"], [16], [768], [1024]),
    Block(["lstm"], ["fp32"], [64], [512], [512]),
]
GPU_TABLE = [Block(LSTM_GRU, ["bf16", "fp32"], [8, 64], [256, 1024], [512])]
# The same table with packed variable-length input.
GPU_PACKED = [Block(LSTM_GRU, ["bf16", "fp32"], [8, 64], [256, 1024], [512], lengths=["var"])]


def _sweeps(combos, hiddens, batches, fixed_b, fixed_h, seq) -> List[Block]:
    """Time per step vs hidden size (at batch fixed_b) and vs batch (at hidden fixed_h) for (cell, dtype) combos."""
    blocks = [Block([c], [d], [fixed_b], hiddens, [seq]) for c, d in combos]
    return blocks + [Block([c], [d], batches, [fixed_h], [seq]) for c, d in combos]


GPU_SWEEP_COMBOS = [("lstm", "fp16"), ("lstm", "bf16"), ("lstm", "fp32"), ("gru", "bf16"), ("gru", "fp32"),
                    ("rnn", "bf16")]

# The fused CPU kernels' target grid: every cell × B × H at T = 128 (the streaming B = 1 rows included), forward
# (no_grad) and forward+backward, then a 2-layer bidirectional LSTM. Two threads (the dev machine's cores; run it
# with --threads 1 for the scaling table).
CPU_GRID = [Block(CELLS, ["fp32"], [1, 8, 32, 64], [128, 256, 512], [128]),
            Block(["lstm"], ["fp32"], [16], [128], [128], layers=2, bidirectional=True)]

PRESETS: Dict[str, Dict[str, Preset]] = {
    "cuda": {
        "quick": Preset([Block(CELLS, ["bf16", "fp32"], [8], [256, 512], [128]),
                         Block(CELLS, ["bf16", "fp32"], [32], [256], [128])],
                        TimerSettings(warmup_s=0.02, rep_s=0.05), time_budget_s=120),
        "default": Preset(GPU_HEADLINE + GPU_TABLE + [Block(CELLS, ["fp16", "bf16", "fp32"], [8, 64], [256, 1024],
                                                            [512])] + GPU_PACKED,
                          TimerSettings(warmup_s=0.025, rep_s=0.1)),
        "full": Preset(GPU_HEADLINE + GPU_TABLE + GPU_PACKED
                       + _sweeps(GPU_SWEEP_COMBOS, [64, 256, 512, 1024, 2048], [1, 8, 16, 64, 256], 16, 512, 512),
                       TimerSettings(warmup_s=0.02, rep_s=0.08), time_budget_s=540),
    },
    # PyTorch's CPU kernels: the same kinds of sweeps at sizes a laptop finishes. Low-precision dtypes run where
    # both the baseline and the implementation support them (otherwise reported as skipped with the reason).
    "cpu": {
        "quick": Preset([Block(CELLS, ["fp32"], [8], [32, 64, 128], [32]),
                         Block(CELLS, ["fp32"], [2], [128], [32])],
                        TimerSettings(warmup_s=0.02, rep_s=0.1, max_s=0.25), time_budget_s=45,
                        # One thread: at these sizes threads barely help, and on a busy 2-core machine (CI) the
                        # OpenMP pools of both sides contend and calls take 100-1000x longer.
                        threads=1),
        "default": Preset([Block(CELLS, ["fp32"], [8, 32], [64, 256], [64]),
                           Block(CELLS, ["fp32"], [32], [256], [64], lengths=["var"]),
                           Block(LSTM_GRU, ["bf16"], [8], [64, 256], [64])],
                          TimerSettings(warmup_s=0.02, rep_s=0.1)),
        "full": Preset([Block(CELLS, ["fp32"], [16, 64], [128], [64], lengths=["var"])]
                       + _sweeps([(c, "fp32") for c in CELLS] + [("lstm", "bf16"), ("gru", "bf16")],
                                 [32, 64, 128, 256, 512], [1, 4, 16, 64], 16, 128, 64),
                       TimerSettings(warmup_s=0.02, rep_s=0.1), time_budget_s=1800),
        "cpu-grid": Preset(CPU_GRID, TimerSettings(warmup_s=0.05, rep_s=0.3, max_s=1.5), threads=2),
    },
}


def preset_names() -> List[str]:
    """Every preset name of any device type."""
    return sorted({name for table in PRESETS.values() for name in table})


def preset(device_type: str, name: str) -> Preset:
    """The preset ``name`` for a device type ("cuda", else the CPU's)."""
    table = PRESETS["cuda" if device_type == "cuda" else "cpu"]
    if name not in table:
        raise ValueError(f"unknown preset {name!r} on {device_type}; expected one of {sorted(table)}")
    return table[name]


def expand(blocks: Sequence[Block], cells=None, dtypes=None, batches=None, hiddens=None, seqs=None, modes=None,
           input_size: int = 0, layers: int = 1, bidirectional: bool = False, lengths=None) -> List[BenchConfig]:
    """The configs of ``blocks``, each given axis replacing that axis in every block; duplicates dropped, the
    blocks' order kept, modes adjacent per shape."""
    out: Dict[BenchConfig, None] = {}
    for block in blocks:
        b = replace(block, **{k: v for k, v in dict(cells=cells, dtypes=dtypes, batches=batches, hiddens=hiddens,
                                                     seqs=seqs, modes=modes, lengths=lengths).items() if v})
        n_layers = layers if b.layers is None else b.layers
        bidir = bidirectional if b.bidirectional is None else b.bidirectional
        for cell, dtype, batch, hidden, seq, length, mode in itertools.product(
                b.cells, b.dtypes, b.batches, b.hiddens, b.seqs, b.lengths, b.modes):
            out[BenchConfig(cell, dtype, batch, hidden, seq, mode, input_size, n_layers, bidir, length)] = None
    return list(out)
