"""Timers and statistics: warm-up, then many timed repetitions summarised by median, p20 and p80.

GPU: each repetition sits between two CUDA events recorded on the current stream, so a time is what the GPU
stream spends from the first kernel of a call to the last one, launch gaps included (a launch-bound path is charged
for its launches). The L2 cache is not flushed between repetitions: an RNN layer in a training step re-reads weights
that it just used, and cuDNN's and our kernels get the same treatment.
CPU: each repetition is timed with ``time.perf_counter``.

Both timers size the run by time: warm-up for ``warmup_s`` (at least ``min_warmup`` calls), then enough
repetitions to fill ``rep_s``, clamped to [``min_reps``, ``max_reps``]. ``fn(i)`` gets the repetition index so a
caller can rotate its inputs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

__all__ = ["Stats", "TimerSettings", "quantile", "summarize", "time_cpu", "time_cuda", "time_fn",
           "peak_memory_mb"]


@dataclass(frozen=True)
class Stats:
    """Milliseconds per call."""

    median: float
    p20: float
    p80: float
    reps: int


@dataclass(frozen=True)
class TimerSettings:
    warmup_s: float = 0.025
    rep_s: float = 0.1
    min_warmup: int = 2
    min_reps: int = 5
    max_reps: int = 500


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method) of sorted values."""
    if not sorted_values:
        raise ValueError("quantile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_ms: Sequence[float]) -> Stats:
    if not samples_ms:
        raise ValueError("summarize needs at least one sample")
    if any(not math.isfinite(s) or s < 0 for s in samples_ms):
        raise ValueError(f"timing samples must be finite and >= 0, got {list(samples_ms)}")
    s = sorted(samples_ms)
    return Stats(median=quantile(s, 0.5), p20=quantile(s, 0.2), p80=quantile(s, 0.8), reps=len(s))


def _rep_count(estimate_s: float, settings: TimerSettings) -> int:
    if estimate_s <= 0:
        return settings.max_reps
    return int(min(settings.max_reps, max(settings.min_reps, round(settings.rep_s / estimate_s))))


def time_cpu(fn: Callable[[int], object], settings: TimerSettings = TimerSettings()) -> Stats:
    start = time.perf_counter()
    calls = 0
    while calls < settings.min_warmup or time.perf_counter() - start < settings.warmup_s:
        fn(calls)
        calls += 1
    estimate = (time.perf_counter() - start) / calls
    samples: List[float] = []
    for i in range(_rep_count(estimate, settings)):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1e3)
    return summarize(samples)


def time_cuda(fn: Callable[[int], object], settings: TimerSettings = TimerSettings()) -> Stats:
    torch.cuda.synchronize()
    start = time.perf_counter()
    calls = 0
    while calls < settings.min_warmup or time.perf_counter() - start < settings.warmup_s:
        fn(calls)
        calls += 1
        torch.cuda.synchronize()
    estimate = (time.perf_counter() - start) / calls
    reps = _rep_count(estimate, settings)
    begin = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        begin[i].record()
        fn(i)
        end[i].record()
    torch.cuda.synchronize()
    return summarize([b.elapsed_time(e) for b, e in zip(begin, end)])


def time_fn(fn: Callable[[int], object], device: torch.device, settings: TimerSettings = TimerSettings()) -> Stats:
    return time_cuda(fn, settings) if device.type == "cuda" else time_cpu(fn, settings)


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """MB that one call of ``fn`` allocates at its peak beyond what was allocated before it (activations, saved
    tensors, workspaces, outputs, gradients); None off the GPU, where PyTorch keeps no allocator statistics."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
