"""pytest-benchmark suite of the headline configs: ``pytest benchmarks/ --benchmark-only``.

One benchmark group per config (``lstm-fp16-B16-H768-T1024-fwd``), holding the baseline and every rnnfused
implementation available here, so ``--benchmark-compare`` lines up runs config by config. On a GPU the configs are
the headline ones (cuDNN's persistent fp16 LSTM, its standard bf16/fp32 paths, GRU); without one the same cells and dtypes run at tiny sizes (PyTorch's CPU nn.* as the
baseline). Each implementation passes the suite's spot-check against a float64 run before it is timed.

    pytest benchmarks/ --benchmark-only                          # run, print the per-group tables
    pytest benchmarks/ --benchmark-only --benchmark-autosave     # keep the run in .benchmarks/
    pytest benchmarks/ --benchmark-only --benchmark-compare      # compare with the last saved run
"""
from __future__ import annotations

import itertools

import pytest
import torch

from benchmarks.check import judge
from benchmarks.config import BenchConfig
from benchmarks.impls import discover, select
from benchmarks.variants import patched_env
from benchmarks.workload import Workload

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"

# (cell, dtype, B, H, T) on the GPU; the CPU runs the same cells and dtypes at B=4, H=32, T=16.
HEADLINE = [("lstm", "fp16", 16, 768, 1024), ("lstm", "bf16", 8, 1024, 512), ("gru", "bf16", 16, 768, 1024),
            ("lstm", "fp32", 64, 512, 512)]
CPU_SIZES = (4, 32, 16)

CONFIGS = [BenchConfig(cell, dtype, *((b, h, t) if ON_GPU else CPU_SIZES), mode)
           for (cell, dtype, b, h, t) in HEADLINE for mode in ("fwd", "fwdbwd")]
IMPLS = select(discover(DEVICE, sorted({c.torch_dtype for c in CONFIGS}, key=str)), None)

_current = {}   # the last shape's workload and the baseline's own error per mode: one shape held at a time


def _workload(cfg: BenchConfig) -> Workload:
    if _current.get("key") != cfg.shape_key:
        old = _current.pop("workload", None)
        if old is not None:
            old.release()
        _current.clear()
        _current.update(key=cfg.shape_key, workload=Workload(cfg, DEVICE))
    return _current["workload"]


def _baseline_error(w: Workload, mode: str) -> float:
    if ("base", mode) not in _current:
        _current[("base", mode)] = w.error_vs_truth(w.baseline, mode)[0]
    return _current[("base", mode)]


@pytest.fixture(autouse=True, scope="module")
def _one_cpu_thread():
    """CPU: one thread, as in the CLI's --quick preset (tiny sizes gain nothing from threads, and on a busy
    machine contended OpenMP pools make calls 100x slower)."""
    saved = torch.get_num_threads()
    if not ON_GPU:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("impl", IMPLS, ids=[i.name for i in IMPLS])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.id for c in CONFIGS])
def test_headline(benchmark, cfg, impl):
    reason = impl.unavailable(cfg, DEVICE)
    if reason is not None:
        pytest.skip(reason)
    w = _workload(cfg)
    with patched_env(impl.env):
        module = impl.build(w.baseline)
        err, worst = w.error_vs_truth(module, cfg.mode)
        if not impl.is_baseline:
            verdict = judge(err, worst, _baseline_error(w, cfg.mode), cfg.dtype, DEVICE.type)
            assert verdict.passed, (f"{impl.name} on {cfg.id}: error {err:.3e} in {worst} exceeds "
                                    f"{verdict.tolerance:.3e}; not timed")
        step = w.step(module, cfg.mode)
        counter = itertools.count()

        def call():
            step(next(counter))
            if ON_GPU:
                torch.cuda.synchronize()

        benchmark.group = cfg.id
        benchmark.extra_info.update(impl=impl.name, device=str(DEVICE), check_error=err,
                                    torch=torch.__version__)
        benchmark(call)
