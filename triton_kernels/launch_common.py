"""What the forward and backward launchers share: compile-time flags, mode detection, the config lookup."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch._subclasses.fake_tensor import is_fake

from rnnfused._cells import CELL_IDS, CellKind

from . import configs
from .configs import KernelConfig
from .dispatch import PathChoice
from .step_kernels import forward_step_kernel

def _defined_interpreted() -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover
        return False
    return isinstance(forward_step_kernel, InterpretedFunction)


# Fixed when the kernels are defined (decorated), so computed once: also keeps the backend's availability check a
# plain function call for torch.compile's tracer.
_INTERPRETED = _defined_interpreted()


def interpreted() -> bool:
    """True when the kernels were defined under TRITON_INTERPRET=1 (they then run on CPU tensors)."""
    return _INTERPRETED


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot precision for float32 follows torch's matmul TF32 switch (off by default): 'ieee' or 'tf32'."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def cell_meta(kind: CellKind, cfg: KernelConfig, dtype: torch.dtype, reverse: bool, has_lengths: bool) -> dict:
    """Compile-time arguments common to every recurrence kernel, plus the launch options."""
    return dict(CELL=CELL_IDS[kind.name], G=kind.gates, S=kind.saved_per_unit, HAS_LENGTHS=has_lengths,
                REVERSE=bool(reverse), BLOCK_B=cfg.block_b, BLOCK_H=cfg.block_h, BLOCK_K=cfg.block_k,
                PRECISION=dot_precision(dtype), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def lookup_config(direction: str, choice: PathChoice, kind: CellKind, like: torch.Tensor, B: int, H: int, K: int,
                  time_config: Optional[Callable[[KernelConfig], float]]) -> KernelConfig:
    key = configs.config_key(direction, choice.path, kind.name, like.dtype, B, H, K, like.device)
    can_time = like.device.type == "cuda" and not is_fake(like)  # fake tensors (torch.compile): nothing to time
    return configs.get_config(key, choice.path, B, H, K, interpreted(), can_time, time_config)


def cuda_time_ms(run: Callable[[], None], reps: int = 3) -> float:
    """Best of `reps` CUDA-event timings of run() after one warm-up call (which also compiles). Outside a
    triton_op, wrap_triton would dispatch through its tracing wrapper: launch the kernels directly, as in eager."""
    from torch._library.triton import set_wrap_triton_enabled

    with set_wrap_triton_enabled(False):
        run()
        best = float("inf")
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end))
    return best
