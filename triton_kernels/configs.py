"""Block configurations of the recurrence kernels, chosen once per shape family and cached.

The cache key is (direction, path, cell, dtype, batch bucket, H, K, device) — never T: a new sequence length reuses
the config and the compiled kernel (the kernels do not specialize on T or the step index). The input size I is not
in the key because the recurrence kernels never see it (x W_ihᵀ is one torch GEMM before the loop).

On a GPU with real tensors, the first call of a family times the candidate configs on a short probe sequence
(scratch buffers, CUDA events) and keeps the fastest; RNNFUSED_TRITON_AUTOTUNE=0 skips that and keeps the
heuristic. In the interpreter, and while torch.compile traces with fake tensors, the cached or heuristic config
is used (nothing to time).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = ["KernelConfig", "config_key", "heuristic_config", "candidate_configs", "get_config", "CONFIG_CACHE",
           "AUTOTUNE_ENV"]

AUTOTUNE_ENV = "RNNFUSED_TRITON_AUTOTUNE"


@dataclass(frozen=True)
class KernelConfig:
    block_b: int   # batch rows per tile (≥ 16: tl.dot's minimum M)
    block_h: int   # hidden units per tile, per gate block
    block_k: int   # reduction chunk of the recurrent GEMM
    num_warps: int = 4
    num_stages: int = 2


def _pow2_at_least(n: int, lo: int, hi: int) -> int:
    p = lo
    while p < n and p < hi:
        p *= 2
    return p


def batch_bucket(B: int) -> int:
    """Power-of-two bucket of the batch size: configs are shared by batches in the same bucket."""
    return _pow2_at_least(B, 1, 1 << 30)


ConfigKey = Tuple


def config_key(direction: str, path: str, cell: str, dtype: torch.dtype, B: int, H: int, K: int,
               device: torch.device) -> ConfigKey:
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (direction, path, cell, str(dtype), batch_bucket(B), H, K, dev)


def heuristic_config(path: str, B: int, H: int, K: int, interpreted: bool) -> KernelConfig:
    if interpreted:
        # Small legal tiles (tl.dot needs ≥ 16): H = 37 already takes two unit tiles and two K chunks, so the
        # masks and loops are exercised, at few interpreted programs (each costs ~0.1 s).
        return KernelConfig(16, 16 if H <= 16 else 32, 16 if K <= 16 else 32, 4, 1)
    block_b = _pow2_at_least(B, 16, 64)
    block_k = _pow2_at_least(K, 16, 64)
    # The persistent grid wants many small tiles (≤ one per SM); the per-step grid wants enough programs to fill
    # the GPU and a wide enough tile to amortise the loads of h.
    block_h = 16 if path == "persistent" or H <= 256 else 32
    return KernelConfig(block_b, block_h, block_k, 4, 2)


def candidate_configs(path: str, B: int, H: int, K: int) -> List[KernelConfig]:
    base = heuristic_config(path, B, H, K, interpreted=False)
    out = [base]
    for block_h in (16, 32, 64):
        for block_k in (32, 64, 128):
            for num_warps in (4, 8):
                c = KernelConfig(base.block_b, block_h, block_k, num_warps, 2)
                if c not in out and block_k <= max(16, _pow2_at_least(K, 16, 128)):
                    out.append(c)
    return out[:8]


CONFIG_CACHE: Dict[ConfigKey, KernelConfig] = {}


def get_config(key: ConfigKey, path: str, B: int, H: int, K: int, interpreted: bool, can_time: bool,
               time_config: Optional[Callable[[KernelConfig], float]] = None) -> KernelConfig:
    """The cached config of this family; on a miss the timed best (when possible) or the heuristic."""
    cfg = CONFIG_CACHE.get(key)
    if cfg is not None:
        return cfg
    cfg = heuristic_config(path, B, H, K, interpreted)
    tune = not interpreted and os.environ.get(AUTOTUNE_ENV, "1") != "0"
    if tune and not (can_time and time_config is not None):
        return cfg  # tracing with fake tensors: use the heuristic now, tune on the first real call
    if tune:
        timings = []
        for cand in candidate_configs(path, B, H, K):
            try:
                timings.append((time_config(cand), cand))
            except Exception:  # e.g. out of resources for this tile size: not a candidate
                continue
        if timings:
            cfg = min(timings, key=lambda tc: tc[0])[1]
    CONFIG_CACHE[key] = cfg
    return cfg
