"""Timers and statistics: warm-up, then timed repetitions summarised by median, p20 and p80 (milliseconds per call).

CPU: ``torch.utils.benchmark.Timer`` — the community's CPU timer — with the thread count of the run
(``num_threads=torch.get_num_threads()``; Timer's own default would be one thread) and adaptive repetitions
(``adaptive_autorange``: Timer picks how many calls make one sample, then takes samples for at least ``rep_s``
seconds until their interquartile range is within ``threshold`` of the median, or ``max_s`` seconds have passed).
A sample is the mean time of a block of calls (one call per block for calls of 50 ms and longer), so the p20/p80 of
fast calls describe block means.

GPU: each repetition sits between two CUDA events recorded on the current stream, so a time is what the GPU stream
spends from the first kernel of a call to the last one, launch gaps included (a launch-bound path is charged for
its launches). With ``flush_l2`` (the default, as ``triton.testing.do_bench`` does) a 256 MB buffer is zeroed
before every repetition, outside the timed events, so each call starts with a cold L2 cache: the case of a layer in
a model whose other layers evicted its weights. Without it the weights the previous repetition left in L2 stay
there (a warm cache: the best case). cuDNN's and our kernels get the same treatment either way. Repetitions are
sized by time: warm-up for ``warmup_s`` (at least ``min_warmup`` calls), then enough repetitions to fill ``rep_s``,
clamped to [``min_reps``, ``max_reps``].

``fn(i)`` gets the repetition index so a caller can rotate its inputs.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.utils.benchmark as torch_benchmark

__all__ = ["Stats", "TimerSettings", "L2_FLUSH_BYTES", "quantile", "summarize", "time_cpu", "time_cuda", "time_fn",
           "describe", "peak_memory_mb"]

# What triton.testing.do_bench zeroes between repetitions to flush the L2 cache (H100: 50 MB of L2, H200: 60 MB).
L2_FLUSH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Stats:
    """Milliseconds per call over the timing samples; ``reps`` calls were timed in ``samples`` samples."""

    median: float
    p20: float
    p80: float
    reps: int
    samples: int = 0

    def __post_init__(self):
        if self.samples == 0:
            object.__setattr__(self, "samples", self.reps)


@dataclass(frozen=True)
class TimerSettings:
    """How long to warm up and to time; ``threshold``/``max_s`` steer the CPU timer, ``min_reps``/``max_reps`` and
    ``flush_l2`` the GPU timer (see the module docstring)."""

    warmup_s: float = 0.025
    rep_s: float = 0.1
    min_warmup: int = 2
    min_reps: int = 5
    max_reps: int = 500
    threshold: float = 0.1
    max_s: float = 1.0
    flush_l2: bool = True


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


def summarize(samples_ms: Sequence[float], calls_per_sample: int = 1) -> Stats:
    """Median, p20 and p80 of per-call times (ms), one per sample of ``calls_per_sample`` calls."""
    if not samples_ms:
        raise ValueError("summarize needs at least one sample")
    if any(not math.isfinite(s) or s < 0 for s in samples_ms):
        raise ValueError(f"timing samples must be finite and >= 0, got {list(samples_ms)}")
    s = sorted(samples_ms)
    return Stats(median=quantile(s, 0.5), p20=quantile(s, 0.2), p80=quantile(s, 0.8),
                 reps=len(s) * calls_per_sample, samples=len(s))


def _rep_count(estimate_s: float, settings: TimerSettings) -> int:
    if estimate_s <= 0:
        return settings.max_reps
    return int(min(settings.max_reps, max(settings.min_reps, round(settings.rep_s / estimate_s))))


def _warm_up(fn: Callable[[int], object], settings: TimerSettings, sync: Callable[[], None] = lambda: None) -> float:
    """Calls ``fn`` for ``warmup_s`` (at least ``min_warmup`` times); returns the mean seconds per call."""
    sync()
    start = time.perf_counter()
    calls = 0
    while calls < settings.min_warmup or time.perf_counter() - start < settings.warmup_s:
        fn(calls)
        calls += 1
        sync()
    return (time.perf_counter() - start) / max(calls, 1)


def time_cpu(fn: Callable[[int], object], settings: TimerSettings = TimerSettings()) -> Stats:
    """``fn`` timed by ``torch.utils.benchmark.Timer.adaptive_autorange`` at the current torch thread count."""
    _warm_up(fn, settings)
    counter = itertools.count()
    timer = torch_benchmark.Timer(stmt="fn(next(counter))", globals={"fn": fn, "counter": counter},
                                  num_threads=torch.get_num_threads())
    m = timer.adaptive_autorange(threshold=settings.threshold, min_run_time=settings.rep_s,
                                 max_run_time=max(settings.max_s, settings.rep_s))
    return summarize([t * 1e3 for t in m.times], m.number_per_run)


def time_cuda(fn: Callable[[int], object], settings: TimerSettings = TimerSettings()) -> Stats:
    """``fn`` timed with CUDA events per repetition, the L2 cache flushed before each one if ``flush_l2``."""
    cache = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda") if settings.flush_l2 else None

    def flushed(i: int) -> None:
        if cache is not None:
            cache.zero_()
        fn(i)

    reps = _rep_count(_warm_up(flushed, settings, torch.cuda.synchronize), settings)
    begin = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if cache is not None:
            cache.zero_()
        begin[i].record()
        fn(i)
        end[i].record()
    torch.cuda.synchronize()
    return summarize([b.elapsed_time(e) for b, e in zip(begin, end)])


def time_fn(fn: Callable[[int], object], device: torch.device, settings: TimerSettings = TimerSettings()) -> Stats:
    """The timer of ``device``: :func:`time_cuda` on a GPU, :func:`time_cpu` otherwise."""
    return time_cuda(fn, settings) if device.type == "cuda" else time_cpu(fn, settings)


def describe(device: torch.device, settings: TimerSettings) -> str:
    """One line saying how ``time_fn`` times on ``device`` with ``settings`` (for the metadata and table header)."""
    warm = f"warm-up {settings.warmup_s * 1e3:g} ms"
    if device.type == "cuda":
        l2 = ("L2 flushed before each repetition (256 MB zeroed, as triton.testing.do_bench)" if settings.flush_l2
              else "L2 not flushed (warm cache)")
        return (f"CUDA events, {warm}, repetitions for {settings.rep_s * 1e3:g} ms "
                f"({settings.min_reps}..{settings.max_reps}), {l2}")
    return (f"torch.utils.benchmark.Timer.adaptive_autorange (threshold {settings.threshold:g}, "
            f"{settings.rep_s:g}..{max(settings.max_s, settings.rep_s):g} s), {torch.get_num_threads()} threads, "
            f"{warm}; a sample is the mean of a block of calls")


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

