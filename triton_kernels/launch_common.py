"""What the forward and backward launchers share: compile-time flags, mode detection, the config lookup, the
device guard and the persistent launch."""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import torch
from torch._subclasses.fake_tensor import is_fake

from rnnfused._cells import CELL_IDS, CellKind

from . import configs
from .barrier import SPIN_LIMIT, raise_if_stalled, stall_record
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


def cell_meta(kind: CellKind, cfg: KernelConfig, dtype: torch.dtype, reverse: bool, has_lengths: bool,
              has_resets: bool, has_zoneout: bool) -> dict:
    """Compile-time arguments common to every recurrence kernel, plus the launch options."""
    return dict(CELL=CELL_IDS[kind.name], G=kind.gates, S=kind.saved_per_unit, HAS_LENGTHS=has_lengths,
                HAS_RESETS=has_resets, HAS_ZONEOUT=has_zoneout, REVERSE=bool(reverse), BLOCK_B=cfg.block_b, BLOCK_H=cfg.block_h,
                BLOCK_K=cfg.block_k, PRECISION=dot_precision(dtype), num_warps=cfg.num_warps,
                num_stages=cfg.num_stages)


def device_guard(device: torch.device):
    """Makes the tensors' device the current CUDA device: Triton launches on the current device, on that device's
    current stream, and CUDA events record there. Everything that launches or times a kernel runs inside it (the
    recurrence launchers wrap their whole body, config lookup and tuning included), so tensors on cuda:1 work while
    cuda:0 is current, and the launches follow the caller's torch.cuda.stream(...) on the tensors' device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


# Launch options of the persistent kernels (compile_check.py compiles them with the same): a cooperative launch,
# so the driver guarantees that all programs are resident at once (or fails the launch) — what the grid barrier
# needs. Triton takes it as a launch keyword (3.6: a CUDAOptions field, so part of the compiled kernel's key and
# metadata). Under torch.compile the launch stays inside an opaque custom op (recurrence_ops.py): Inductor's
# user-defined-kernel path (wrap_triton) would compile the kernel without this option (torch 2.13:
# _inductor/codegen/wrapper.py builds the kernel's triton_meta without it, and wrap_triton's tracer moves only
# num_warps/num_stages/num_ctas/... into the config).
PERSISTENT_LAUNCH_OPTIONS = dict(launch_cooperative_grid=True)


def launch_persistent(kernel, programs: int, T: int, ptrs: Sequence, B: int, H: int, K: int, meta: dict,
                      device: torch.device) -> None:
    """One cooperative launch of a persistent kernel: (T, *ptrs, barrier, stall record, spin limit, B, H, K).
    Raises first if an earlier persistent launch on this device recorded a stall (barrier.py)."""
    raise_if_stalled(device)
    barrier = torch.zeros(2, dtype=torch.int32, device=device)  # [arrivals, stall claim], barrier.grid_barrier
    kernel[(programs,)](T, *ptrs, barrier, stall_record(device), SPIN_LIMIT, B, H, K, **meta,
                        **PERSISTENT_LAUNCH_OPTIONS)


def lookup_config(direction: str, choice: PathChoice, kind: CellKind, like: torch.Tensor, B: int, H: int, K: int,
                  time_config: Optional[Callable[[KernelConfig], float]]) -> KernelConfig:
    key = configs.config_key(direction, choice.path, kind.name, like.dtype, B, H, K, like.device)
    can_time = like.device.type == "cuda" and not is_fake(like)  # fake tensors (torch.compile): nothing to time
    return configs.get_config(key, choice.path, B, H, K, interpreted(), can_time, time_config)


def cuda_time_ms(run: Callable[[], None], reps: int = 3) -> float:
    """Best of `reps` CUDA-event timings of run() after one warm-up call (which also compiles), on the current
    device and stream (call it inside device_guard; never while capturing: configs.get_config checks)."""
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
