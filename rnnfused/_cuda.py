"""Python helpers of the ``cuda`` backend: which path a layer takes, and the CUDA-graph cache.

    rnnfused.cuda_path("lstm", seq_len=512, batch=8, input_size=256, hidden_size=256, dtype=torch.bfloat16)
        -> "persistent" or "stepwise" (csrc/cuda/dispatch.h decides)
    RNNFUSED_CUDA_PATH=stepwise|persistent   force a path (default: the rule in csrc/cuda/dispatch.h)
    RNNFUSED_CUDA_GRAPHS=1   replay the step-wise loop from cached CUDA graphs (default off; csrc/cuda/graph_cache.h)
    rnnfused.cuda_graph_stats() -> {"captures": ..., "replays": ..., "cached": ...}
    rnnfused.clear_cuda_graphs()
"""
from __future__ import annotations

import os

import torch

from . import _extension

__all__ = ["GRAPHS_ENV_VAR", "PATH_ENV_VAR", "cuda_path", "cuda_graphs_enabled", "cuda_graph_stats", "clear_cuda_graphs"]

GRAPHS_ENV_VAR = "RNNFUSED_CUDA_GRAPHS"
PATH_ENV_VAR = "RNNFUSED_CUDA_PATH"


def _cuda_module():
    if not _extension.cuda_built():
        raise RuntimeError(_extension.EXTENSION_ERROR or "rnnfused._C was built without CUDA; the cuda backend is absent")
    return _extension.extension()


def cuda_path(cell: str, seq_len: int, batch: int, input_size: int, hidden_size: int, *, proj_size: int = 0,
              dtype: torch.dtype = torch.float32, bias: bool = True, lengths: bool = False, reverse: bool = False,
              device=None) -> str:
    """The CUDA path ("stepwise" or "persistent") one layer-direction of this configuration takes.

    ``cell``: lstm, gru, rnn_tanh, rnn_relu; ``lengths``: whether per-row lengths are given; ``device``: a CUDA
    device (default: the current one).
    """
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    index = -1 if device is None else torch.device(device).index
    return _cuda_module().cuda_path(cell, seq_len, batch, input_size, hidden_size, proj_size,
                                    str(dtype).replace("torch.", ""), bias, lengths, reverse,
                                    -1 if index is None else index)


def cuda_graphs_enabled() -> bool:
    """Whether the cuda backend replays its step loops from CUDA graphs (``RNNFUSED_CUDA_GRAPHS=1``)."""
    return os.environ.get(GRAPHS_ENV_VAR, "").strip() == "1"


def cuda_graph_stats() -> dict:
    return dict(_cuda_module().cuda_graph_stats())


def clear_cuda_graphs() -> None:
    _cuda_module().clear_cuda_graphs()
