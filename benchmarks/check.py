"""The correctness spot-check run before any config is timed.

Every implementation (the baseline included) runs the config once in its storage dtype; its outputs (and, for
fwd+bwd, the gradients of the input and every weight for the same random upstream gradient) are compared with a
float64 run of the baseline on the same weights and inputs — the truth. The error of a tensor is its largest
absolute deviation relative to the truth's largest magnitude. An implementation passes when

    error(impl) <= max(FACTOR * error(baseline), FLOOR[dtype])

i.e. it is at most a few times as far from the truth as the baseline is in the same dtype (the tests' rule:
flash-attention's), with a dtype floor of about ten unit roundoffs of the math a kernel may use for that storage
dtype, so that an exact baseline does not fail a tensor-core kernel: on a GPU float32 may run on TF32 tensor cores
(Triton's tl.dot does by default), on the CPU it runs in float32 and the floor is far lower. A wrong
kernel lands orders of magnitude above the bound; an implementation that fails is reported and never timed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["FACTOR", "FLOOR", "FLOOR_CPU", "CheckResult", "relative_error", "worst_error", "judge"]

FACTOR = 4.0
FLOOR = {"fp64": 1e-9, "fp32": 5e-3, "fp16": 5e-3, "bf16": 4e-2}
FLOOR_CPU = dict(FLOOR, fp32=1e-4)


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    error: float                 # worst relative error of the implementation vs the float64 truth
    tolerance: float             # the bound it was held to
    worst: str                   # name of the tensor with that error


def relative_error(actual: Tensor, truth: Tensor) -> float:
    """max|actual - truth| / max|truth| (inf when shapes differ or actual is not finite where truth is)."""
    if actual is None or truth is None:
        return 0.0 if actual is None and truth is None else float("inf")
    if tuple(actual.shape) != tuple(truth.shape):
        return float("inf")
    a, t = actual.detach().to(torch.float64), truth.detach().to(torch.float64)
    scale = float(t.abs().max()) if t.numel() else 0.0
    diff = (a - t).abs()
    if diff.numel() and not bool(torch.isfinite(diff).all()):
        return float("inf")
    worst = float(diff.max()) if diff.numel() else 0.0
    return worst / scale if scale > 0 else worst


def worst_error(actual: Sequence[Optional[Tensor]], truth: Sequence[Optional[Tensor]],
                names: Sequence[str]) -> tuple:
    """(largest relative error, name of that tensor) over paired tensors."""
    if len(actual) != len(truth):
        return float("inf"), f"{len(actual)} tensors vs {len(truth)} expected"
    worst, name = 0.0, ""
    for a, t, n in zip(actual, truth, names):
        err = relative_error(a, t)
        if err > worst or not name:
            worst, name = err, n
    return worst, name


def judge(error: float, worst: str, baseline_error: float, dtype: str, device_type: str = "cuda") -> CheckResult:
    floor = (FLOOR_CPU if device_type == "cpu" else FLOOR)[dtype]
    tolerance = max(FACTOR * baseline_error, floor)
    return CheckResult(passed=error <= tolerance, error=error, tolerance=tolerance, worst=worst)
