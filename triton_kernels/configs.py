"""Block configurations of the recurrence kernels, chosen once per shape family and cached.

The cache key is (direction, path, cell, dtype, batch bucket, H, K, device) — never T: a new sequence length reuses
the config and the compiled kernel (the kernels do not specialize on T or the step index). The input size I is not
in the key because the recurrence kernels never see it (x W_ihᵀ is one torch GEMM before the loop).

What a user gets (RNNFUSED_TRITON_AUTOTUNE, read at each lookup):
  1 (default)  tune once per shape family, cached in memory and on disk (config_cache.py: Triton's cache dir, one
               file per GPU name + Triton version + rnnfused version). The first call of a family on a GPU times the
               ≤ 8 candidate configs on a short probe sequence (scratch buffers, CUDA events; a few seconds, mostly
               compiling); later calls and later processes read the result. Call the model once before timing it,
               and before capturing it in a CUDA graph.
  0            the heuristic config, never timed, disk cache neither read nor written: reproducible, no tuning
               pause. The tests run this way (tests/conftest.py sets it, so the device check's pytest stage does
               too); export it for any other fixed-config run (e.g. benchmark stages of .ci/gpu_check.sh).
Never timed, whatever the setting: in the interpreter (nothing to time), while torch.compile traces with fake
tensors, and while the current CUDA stream is being captured into a graph (timing synchronizes, which capture
forbids). Those calls use the memory or disk cache, else the heuristic without remembering it, so the family is
still tuned on its next eager call.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import config_cache
from .barrier import BarrierStall

__all__ = ["KernelConfig", "config_key", "heuristic_config", "candidate_configs", "get_config", "CONFIG_CACHE",
           "AUTOTUNE_ENV", "autotune_enabled", "capturing"]

AUTOTUNE_ENV = "RNNFUSED_TRITON_AUTOTUNE"
_ON, _OFF = ("1", "on", "true", "yes", ""), ("0", "off", "false", "no")


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


def autotune_enabled() -> bool:
    value = os.environ.get(AUTOTUNE_ENV, "1").strip().lower()
    if value not in _ON + _OFF:
        raise ValueError(f"{AUTOTUNE_ENV} must be 1 (tune once per shape family, cached on disk) or 0 (heuristic "
                         f"configs, never timed), got {value!r}")
    return value in _ON


def capturing() -> bool:
    """True while the current CUDA stream (of the current device) is being captured into a CUDA graph."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _from_disk(key: ConfigKey, legal: List[KernelConfig]) -> Optional[KernelConfig]:
    raw = config_cache.load("|".join(map(str, key)), key[-1])
    if raw is None or len(raw) != 5:
        return None
    cfg = KernelConfig(*raw)
    return cfg if cfg in legal else None  # a stale or hand-edited entry is a miss, never a launch failure


def _tune(candidates: List[KernelConfig], time_config: Callable[[KernelConfig], float]) -> Optional[KernelConfig]:
    timings = []
    for cand in candidates:
        try:
            timings.append((time_config(cand), cand))
        except BarrierStall:  # never hidden as "a config that does not fit"
            raise
        except Exception:  # e.g. out of resources for this tile size, too large a cooperative grid: not a candidate
            continue
    return min(timings, key=lambda tc: tc[0])[1] if timings else None


def get_config(key: ConfigKey, path: str, B: int, H: int, K: int, interpreted: bool, can_time: bool,
               time_config: Optional[Callable[[KernelConfig], float]] = None) -> KernelConfig:
    """The config of this shape family: memory cache, then (tuning on) disk cache, then the timed best when timing
    is possible now, else the heuristic. Call it on the tensors' device (launch_common.device_guard)."""
    cfg = CONFIG_CACHE.get(key)
    if cfg is not None:
        return cfg
    heuristic = heuristic_config(path, B, H, K, interpreted)
    if interpreted or not autotune_enabled():
        CONFIG_CACHE[key] = heuristic
        return heuristic
    legal = candidate_configs(path, B, H, K)
    cfg = _from_disk(key, legal)
    if cfg is None:
        if not can_time or time_config is None or capturing():
            return heuristic  # tracing or capturing: use the heuristic now, tune on the next eager call
        cfg = _tune(legal, time_config) or heuristic
        config_cache.store("|".join(map(str, key)), key[-1], (cfg.block_b, cfg.block_h, cfg.block_k,
                                                                cfg.num_warps, cfg.num_stages))
    CONFIG_CACHE[key] = cfg
    return cfg
