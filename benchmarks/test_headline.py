"""pytest-benchmark suite of the headline configs: ``pytest benchmarks/ --benchmark-only``.

One benchmark group per config (``lstm-fp16-B16-H768-T1024-fwd``), holding the baseline and every rnnfused
implementation available here, so ``--benchmark-compare`` lines up runs config by config. On a GPU the configs are
the headline ones (cuDNN's persistent fp16 LSTM, its standard bf16/fp32 paths, GRU) plus a packed variable-length
one; without a GPU the same cells and dtypes run at tiny sizes (PyTorch's CPU nn.* as the baseline).

The call that is timed comes from the same path as the CLI's (``benchmarks.runner.ShapeRun.checked``: same
workload, switches, module and spot-check against a float64 run; an implementation that fails the check is not
timed); pytest-benchmark then times it with its own rounds (synchronizing the GPU after each call), so its
storage and ``--benchmark-compare`` work as usual.

    pytest benchmarks/ --benchmark-only                          # run, print the per-group tables
    pytest benchmarks/ --benchmark-only --benchmark-autosave     # keep the run in .benchmarks/
    pytest benchmarks/ --benchmark-only --benchmark-compare      # compare with the last saved run
"""
from __future__ import annotations

import itertools

import pytest
import torch

from benchmarks.config import BenchConfig
from benchmarks.impls import discover, select
from benchmarks.runner import ShapeRun

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"

# (cell, dtype, B, H, T, lengths) on the GPU; the CPU runs the same cells and dtypes at B=4, H=32, T=16.
HEADLINE = [("lstm", "fp16", 16, 768, 1024, "full"), ("lstm", "bf16", 8, 1024, 512, "full"),
            ("gru", "bf16", 16, 768, 1024, "full"), ("lstm", "fp32", 64, 512, 512, "full"),
            ("lstm", "bf16", 64, 512, 512, "var")]
CPU_SIZES = (4, 32, 16)

CONFIGS = [BenchConfig(cell, dtype, *((b, h, t) if ON_GPU else CPU_SIZES), mode, lengths=lengths)
           for (cell, dtype, b, h, t, lengths) in HEADLINE for mode in ("fwd", "fwdbwd")]
IMPLS = select(discover(DEVICE, sorted({c.torch_dtype for c in CONFIGS}, key=str)), None)

_current = {}   # the last shape's ShapeRun: one shape held at a time


def _shape(cfg: BenchConfig) -> ShapeRun:
    if _current.get("key") != cfg.shape_key:
        old = _current.pop("shape", None)
        if old is not None:
            old.close()
        _current.update(key=cfg.shape_key, shape=ShapeRun(cfg, DEVICE))
    return _current["shape"]


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
    with _shape(cfg).checked(impl, cfg) as (res, step):
        assert step is not None, (f"{impl.name} on {cfg.id}: error {res.check_err:.3e} exceeds "
                                  f"{res.check_tol:.3e} ({res.note}); not timed")
        counter = itertools.count()

        def call():
            step(next(counter))
            if ON_GPU:
                torch.cuda.synchronize()

        benchmark.group = cfg.id
        benchmark.extra_info.update(impl=impl.name, device=str(DEVICE), check_error=res.check_err,
                                    torch=torch.__version__)
        benchmark(call)
