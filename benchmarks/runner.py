"""Runs the grid: for each config, the baseline then every implementation — spot-check first, time only what
passed, peak memory on the GPU — and returns one :class:`Result` per (config, implementation)."""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from .check import judge
from .config import BenchConfig
from .impls import Impl
from .progress import Progress
from .timing import Stats, TimerSettings, peak_memory_mb, time_fn
from .variants import patched_env
from .workload import Workload

__all__ = ["Result", "ShapeRun", "run_grid", "STATUSES"]

# ok: checked and timed; failed: check failed (not timed); error: raised (not timed); skipped: cannot run here.
STATUSES = ("ok", "failed", "error", "skipped")

Timer = Callable[[Callable[[int], object], torch.device, TimerSettings], Stats]


@dataclass
class Result:
    """One (config, implementation) of a run: its status, check and timing."""

    cfg: BenchConfig
    impl: str
    status: str
    backend: str = ""
    variant: str = ""
    is_baseline: bool = False
    check: str = ""                      # pass | fail | base (the baseline's own error) | "" (not checked)
    check_err: Optional[float] = None    # relative error vs the float64 truth
    check_tol: Optional[float] = None
    stats: Optional[Stats] = None
    peak_mb: Optional[float] = None
    speedup: Optional[float] = None      # baseline median / this median
    note: str = ""

    @property
    def us_per_step(self) -> Optional[float]:
        return None if self.stats is None else self.stats.median * 1e3 / self.cfg.seq_len


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _group_by_shape(configs: Sequence[BenchConfig]) -> "OrderedDict[tuple, List[BenchConfig]]":
    groups: "OrderedDict[tuple, List[BenchConfig]]" = OrderedDict()
    for cfg in configs:
        groups.setdefault(cfg.shape_key, []).append(cfg)
    return groups


class ShapeRun:
    """One shape's workload, modules and baseline errors, shared by its modes and implementations.

    :meth:`checked` is the one path from an implementation to a timed call: set its switches, build its module,
    spot-check it against the float64 truth, and hand out the call to time. The CLI (:meth:`measure`, via
    :func:`run_grid`) and the pytest-benchmark suite (benchmarks/test_headline.py) both go through it.
    """

    def __init__(self, cfg: BenchConfig, device: torch.device, timer: Timer = time_fn,
                 settings: TimerSettings = TimerSettings()):
        self.device, self.timer, self.settings = device, timer, settings
        self.workload = Workload(cfg, device)
        self.modules: Dict[str, torch.nn.Module] = {}
        self._baseline_err: Dict[str, float] = {}

    def baseline_error(self, mode: str) -> float:
        """The baseline's own error vs the float64 truth in ``mode`` (the scale the check holds others to)."""
        if mode not in self._baseline_err:
            self._baseline_err[mode] = self.workload.error_vs_truth(self.workload.baseline, mode)[0]
        return self._baseline_err[mode]

    @contextlib.contextmanager
    def checked(self, impl: Impl, cfg: BenchConfig) -> Iterator[Tuple[Result, Optional[Callable[[int], None]]]]:
        """Within the block: ``impl``'s switches set, its module built and spot-checked. Yields the result so far
        (check fields filled; status "failed" when the check failed) and ``fn(i)``, one call with input pair i of
        the pool — or None when the check failed (a failed implementation is never timed)."""
        res = Result(cfg, impl.name, "ok", impl.backend, impl.variant, impl.is_baseline)
        w = self.workload
        with patched_env(impl.env):
            res.note = impl.note(cfg)
            if impl.name not in self.modules:
                self.modules[impl.name] = impl.build(w.baseline)
            module = self.modules[impl.name]
            if not impl.comparable:  # a feature nn.* lacks: nothing to compare with; timed as is
                w.call(module, cfg.mode)  # the call the spot-check makes for the others (first-call costs)
                yield res, w.step(module, cfg.mode)
                return
            err, worst = w.error_vs_truth(module, cfg.mode)
            if impl.is_baseline:
                res.check, res.check_err = "base", err
                self._baseline_err[cfg.mode] = err
            else:
                verdict = judge(err, worst, self.baseline_error(cfg.mode), cfg.dtype, self.device.type)
                res.check = "pass" if verdict.passed else "fail"
                res.check_err, res.check_tol = verdict.error, verdict.tolerance
                if not verdict.passed:
                    res.status = "failed"
                    res.note = _join(res.note, f"worst: {worst}")
            yield res, (w.step(module, cfg.mode) if res.status == "ok" else None)

    def measure(self, impl: Impl, cfg: BenchConfig) -> Result:
        """Spot-check, then time ``impl`` on ``cfg`` with this run's timer; peak memory on the GPU."""
        with self.checked(impl, cfg) as (res, fn):
            if fn is not None:
                res.stats = self.timer(fn, self.device, self.settings)
                res.peak_mb = peak_memory_mb(lambda: fn(0), self.device)
        return res

    def close(self) -> None:
        """Frees the shape's tensors and modules."""
        self.workload.release()
        self.modules.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def run_grid(configs: Sequence[BenchConfig], impls: Sequence[Impl], device: torch.device,
             settings: TimerSettings = TimerSettings(), progress: Optional[Progress] = None,
             time_budget_s: Optional[float] = None, timer: Timer = time_fn) -> List[Result]:
    """Every config × impl. ``impls`` must start with the baseline. Past ``time_budget_s`` seconds, the shapes
    not started yet are reported as skipped (the first shape always runs)."""
    if not impls or not impls[0].is_baseline:
        raise ValueError("impls must start with the baseline implementation")
    results: List[Result] = []
    start = time.perf_counter()
    progress = progress or Progress(len(configs) * len(impls), enabled=False)

    def skip_all(cfg: BenchConfig, reason: str, first: int = 0) -> None:
        for impl in impls[first:]:
            results.append(Result(cfg, impl.name, "skipped", impl.backend, impl.variant, impl.is_baseline,
                                  note=reason))
            progress.advance(f"{cfg.id} {impl.name}")

    for group in _group_by_shape(configs).values():
        if time_budget_s is not None and results and time.perf_counter() - start > time_budget_s:
            for cfg in group:
                skip_all(cfg, f"time budget of {time_budget_s:.0f} s used up")
            continue
        try:
            shape = ShapeRun(group[0], device, timer, settings)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory for the inputs
            for cfg in group:
                skip_all(cfg, f"could not set up the workload: {_short(exc)}")
            continue
        try:
            for cfg in group:
                _run_config(shape, cfg, impls, device, results, progress, skip_all)
        finally:
            shape.close()
    progress.finish()
    return results


def _run_config(shape: ShapeRun, cfg: BenchConfig, impls: Sequence[Impl], device: torch.device,
                results: List[Result], progress: Progress, skip_all) -> None:
    baseline = impls[0]
    progress.advance(f"{cfg.id} {baseline.name}", done=0)
    try:
        base = shape.measure(baseline, cfg)
    except Exception as exc:  # noqa: BLE001 - the baseline cannot run this dtype/shape here
        _recover(device)
        skip_all(cfg, f"baseline {baseline.name} cannot run it here: {_short(exc)}")
        return
    if base.stats is not None:
        base.speedup = 1.0
    results.append(base)
    progress.advance(f"{cfg.id} {baseline.name}")
    for impl in impls[1:]:
        progress.advance(f"{cfg.id} {impl.name}", done=0)
        reason = impl.unavailable(cfg, device)
        if reason is not None:
            results.append(Result(cfg, impl.name, "skipped", impl.backend, impl.variant, note=reason))
        else:
            try:
                res = shape.measure(impl, cfg)
            except Exception as exc:  # noqa: BLE001 - an implementation that raises is reported, not timed
                _recover(device)
                res = Result(cfg, impl.name, "error", impl.backend, impl.variant, note=_short(exc))
            if res.stats is not None and base.stats is not None and res.stats.median > 0:
                res.speedup = base.stats.median / res.stats.median
            results.append(res)
        progress.advance(f"{cfg.id} {impl.name}")


def _recover(device: torch.device) -> None:
    """Frees what a failed call left on the GPU (a sticky CUDA error would resurface here: ignore it, the next
    calls will report it)."""
    if device.type == "cuda":
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
