"""Python helpers of the ``cuda`` backend: which path a layer takes and why, the persistent kernels' crossover table,
tuning knob and stall record, the GPUs this build can run on, and the CUDA-graph cache.

    rnnfused.cuda_path("lstm", seq_len=512, batch=8, input_size=256, hidden_size=256, dtype=torch.bfloat16)
        -> "persistent" or "stepwise" (csrc/cuda/dispatch.h decides); explain=True -> (path, why)
    rnnfused/persistent_crossover.txt   the measured batch bound of the persistent path (loaded at import;
        rewrite it with `python -m benchmarks.crossover results.csv`, reload with rnnfused.load_crossover_table())
    RNNFUSED_PATH=stepwise|persistent   force a path (default: the rule in csrc/cuda/dispatch.h)
    RNNFUSED_PERSISTENT_TUNING=[variant][,units=N][,nchunk=N]   the persistent kernels' synchronisation variant
        (baseline, store_first, padded, poll_warp, ll) and geometry overrides (csrc/cuda/kernels/persistent_tuning.h)
    RNNFUSED_CUDA_GRAPHS=1   replay the step-wise loop from cached CUDA graphs (default off; csrc/cuda/graph_cache.h)
    rnnfused.persistent_stall() -> None or the record of a persistent launch the watchdog abandoned
    rnnfused.cuda_arches() -> the code targets the extension was built for ("sm_80", "sm_90", "compute_90", ...)
    rnnfused.cuda_graph_stats() -> {"captures": ..., "replays": ..., "cached": ...}
    rnnfused.clear_cuda_graphs()
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Tuple, Union

import torch

from . import _extension

__all__ = ["GRAPHS_ENV_VAR", "PATH_ENV_VAR", "TUNING_ENV_VAR", "PERSISTENT_VARIANTS", "CROSSOVER_FILE", "cuda_path",
           "load_crossover_table", "persistent_crossover", "persistent_stall", "cuda_arches",
           "kernel_image_unavailable", "cuda_graphs_enabled", "cuda_graph_stats", "clear_cuda_graphs"]

GRAPHS_ENV_VAR = "RNNFUSED_CUDA_GRAPHS"
PATH_ENV_VAR = "RNNFUSED_PATH"
TUNING_ENV_VAR = "RNNFUSED_PERSISTENT_TUNING"
PERSISTENT_VARIANTS = ("baseline", "store_first", "padded", "poll_warp", "ll")  # persistent_tuning.h
CROSSOVER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "persistent_crossover.txt")


def _cuda_module():
    if not _extension.cuda_built():
        raise RuntimeError(_extension.EXTENSION_ERROR or "rnnfused._C was built without CUDA; the cuda backend is absent")
    return _extension.extension()


def cuda_path(cell: str, seq_len: int, batch: int, input_size: int, hidden_size: int, *, proj_size: int = 0,
              dtype: torch.dtype = torch.float32, bias: bool = True, lengths: bool = False, reverse: bool = False,
              device=None, explain: bool = False, layer_norm: bool = False) -> Union[str, Tuple[str, str]]:
    """The CUDA path ("stepwise" or "persistent") one layer-direction of this configuration takes.

    Args:
        cell: a registry cell name: lstm, gru, rnn_tanh, rnn_relu.
        seq_len, batch, input_size, hidden_size, proj_size: the layer's sizes (proj_size: LSTM only).
        dtype: the input's dtype; bias: whether the layer has biases; lengths: whether per-row lengths are given;
            reverse: the backward direction of a bidirectional layer.
        device: a CUDA device (default: the current one).
        explain: also return why.
        layer_norm: the cell's LayerNorm variant (rnnfused.layer_norm): always the step-wise path.

    Returns:
        ``"stepwise"`` or ``"persistent"``; with ``explain=True`` ``(path, why)``, ``why`` naming the fit rule's
        verdict or the crossover-table row that decided.

    Raises:
        RuntimeError: without a CUDA build of the extension; ValueError for a dtype that is not a torch.dtype.

    Example::

        >>> rnnfused.cuda_path("lstm", 512, 8, 256, 256, dtype=torch.bfloat16, explain=True)
        ('persistent', 'fits (...); crossover table: batch 8 <= 64')
    """
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype, got {dtype!r}")
    if layer_norm:
        why = ("the persistent kernels decline LayerNorm cells: each step's LayerNorm of h W_hhᵀ needs the mean and "
               "variance over all G·H units of a row, which the persistent CTAs split between them")
        return ("stepwise", why) if explain else "stepwise"
    index = -1 if device is None else torch.device(device).index
    path, why = _cuda_module().cuda_path(cell, seq_len, batch, input_size, hidden_size, proj_size,
                                         str(dtype).replace("torch.", ""), bias, lengths, reverse,
                                         -1 if index is None else index)
    return (path, why) if explain else path


def load_crossover_table(path: Optional[str] = None) -> str:
    """Hands the crossover table at ``path`` to the dispatch rule (without a rebuild).

    Args:
        path: a table in the format of ``rnnfused/persistent_crossover.txt`` (default: that file, shipped in the
            package), e.g. one written by ``python -m benchmarks.crossover results.csv --write PATH``.

    Returns:
        The table now in force, in one line (as :func:`persistent_crossover`).

    Raises:
        RuntimeError: a malformed table (naming the line); the previous table stays in force. OSError: unreadable.

    Example::

        >>> rnnfused.load_crossover_table("bench_out/persistent_crossover.txt")
    """
    path = path or CROSSOVER_FILE
    with open(path) as f:
        text = f.read()
    module = _cuda_module()
    module.set_persistent_crossover(text, path)
    return module.persistent_crossover()


def persistent_crossover() -> str:
    """The crossover table the dispatch rule reads, in one line: ``"source: ...; <row>; <row>"``.

    Example::

        >>> rnnfused.persistent_crossover()
        'source: not measured (default: persistent path up to batch 64); ...'
    """
    return _cuda_module().persistent_crossover()


def persistent_stall() -> Optional[dict]:
    """The record of a persistent launch the watchdog abandoned (a producer never arrived).

    Returns:
        None when there is none, else a dict with ``message``, ``cta``, ``warp``, ``phase``, ``producer``, ``seen``,
        ``target``, ``ctas``, ``phases``, ``direction``, ``variant``, ``spins``. Reading clears it. Call
        ``torch.cuda.synchronize()`` first: the kernel writes it asynchronously. (The next persistent launch also
        raises it as its error.)

    Example::

        >>> torch.cuda.synchronize(); rnnfused.persistent_stall()   # None: no launch was abandoned
    """
    return _cuda_module().persistent_stall()


def cuda_arches() -> Tuple[str, ...]:
    """The code targets the CUDA kernels were built for.

    Returns:
        A tuple of ``sm_XY`` (machine code) and ``compute_XY`` (PTX that newer GPUs JIT-compile); empty without a CUDA
        build.

    Example::

        >>> rnnfused.cuda_arches()
        ('sm_80', 'sm_90', 'compute_90')
    """
    return tuple(getattr(_extension.extension(), "cuda_arches", ())) if _extension.extension_loaded() else ()


_IMAGE_CHECKS: Dict[int, Optional[str]] = {}


def kernel_image_unavailable(device: torch.device) -> Optional[str]:
    """None when the extension holds a kernel image that ``device`` can run, else a sentence saying why not (a GPU
    newer than the build's targets without PTX, or older than sm_80). Probed once per device."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _IMAGE_CHECKS or torch.compiler.is_compiling():
        return _IMAGE_CHECKS.get(index)
    error = _cuda_module().cuda_kernel_image_error(index)
    reason = None
    if error:
        major, minor = torch.cuda.get_device_capability(index)
        reason = (f"rnnfused._C has no kernel image for cuda:{index} (sm_{major}{minor}): it was built for "
                  f"{', '.join(cuda_arches()) or 'unknown targets'} ({error}); rebuild with "
                  f"TORCH_CUDA_ARCH_LIST={major}.{minor} (pip install --no-build-isolation -e .)")
    _IMAGE_CHECKS[index] = reason
    return reason


def cuda_graphs_enabled() -> bool:
    """Whether the cuda backend replays its step loops from CUDA graphs (``RNNFUSED_CUDA_GRAPHS=1``)."""
    return os.environ.get(GRAPHS_ENV_VAR, "").strip() == "1"


def cuda_graph_stats() -> dict:
    """Counters of the step-wise path's CUDA-graph cache (``RNNFUSED_CUDA_GRAPHS=1``).

    Returns:
        ``{"captures": int, "replays": int, "cached": int}``.

    Raises:
        RuntimeError: without a CUDA build of the extension.

    Example::

        >>> rnnfused.cuda_graph_stats()
        {'captures': 0, 'replays': 0, 'cached': 0}
    """
    return dict(_cuda_module().cuda_graph_stats())


def clear_cuda_graphs() -> None:
    """Drops every cached CUDA graph (and the memory its static buffers hold).

    Raises:
        RuntimeError: without a CUDA build of the extension.

    Example::

        >>> rnnfused.clear_cuda_graphs()
    """
    _cuda_module().clear_cuda_graphs()


if _extension.cuda_built():
    try:
        load_crossover_table()
    except (OSError, RuntimeError) as exc:  # a broken install: the rule keeps its built-in default (batch <= 64)
        warnings.warn(f"rnnfused: could not load {CROSSOVER_FILE}: {exc}; the cuda backend uses its built-in "
                      "crossover default (persistent path up to batch 64)")
