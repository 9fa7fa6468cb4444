"""Python helpers of the ``cpu`` backend: which path a layer takes and which instruction set its kernels use.

    rnnfused.cpu_path("lstm", seq_len=128, batch=1, input_size=256, hidden_size=256)
        -> "fused" or "stepwise" (the rule in csrc/cpu/cpu_path.cpp)
    rnnfused.cpu_isa() -> "avx512", "avx2" or "portable" (what the fused kernels and the step-wise pointwise loops run
        with on this CPU)

``fused``: one parallel region per layer-direction and call; threads own slices of hidden units for the whole
sequence, W_hh is packed once per call into cache-resident panels, a register-blocked micro-kernel computes each
step's gate pre-activations and applies the cell math on them in registers, the threads meet once per step at a spin
barrier. ``stepwise``: per step one BLAS GEMM and one fused pointwise pass; serves every dtype.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from . import _extension

__all__ = ["cpu_path", "cpu_isa"]


def _cpu_module():
    if not _extension.extension_loaded():
        raise RuntimeError(_extension.EXTENSION_ERROR)
    return _extension.extension()


def cpu_path(cell: str, seq_len: int, batch: int, input_size: int, hidden_size: int, *, proj_size: int = 0,
             dtype: torch.dtype = torch.float32, bias: bool = True, lengths: bool = False,
             reverse: bool = False) -> str:
    """The CPU path ("fused" or "stepwise") one layer-direction of this configuration takes.

    ``cell``: a registry cell (lstm, gru, rnn_tanh, rnn_relu); ``lengths``: whether per-row lengths are given.
    """
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    return _cpu_module().cpu_path(cell, seq_len, batch, input_size, hidden_size, proj_size,
                                  str(dtype).replace("torch.", ""), bias, lengths, reverse)


def cpu_isa() -> str:
    """The instruction set the fused CPU kernels and the step-wise pointwise loops use here: avx512, avx2 or
    portable."""
    return _cpu_module().cpu_isa()


@contextlib.contextmanager
def _forced(path: Optional[str] = None, isa: Optional[str] = None, workers: Optional[int] = None) -> Iterator[None]:
    """Test hook: run the block with the CPU path ("stepwise"/"fused"), the ISA of the fused kernels and of the
    step-wise pointwise loops ("portable"/"avx2"/"avx512") and/or the fused kernels' number of logical workers
    forced. Process-wide."""
    module = _cpu_module()
    undo = []
    try:
        if path is not None:
            undo.append((module._cpu_force_path, module._cpu_force_path(path)))
        if isa is not None:
            undo.append((module._cpu_force_isa, module._cpu_force_isa(isa)))
        if workers is not None:
            undo.append((module._cpu_force_workers, module._cpu_force_workers(workers)))
        yield
    finally:
        for restore, previous in reversed(undo):
            restore(previous)
