"""Which recurrence path a layer-direction takes: the one place that decides between the two kernel shapes.

    step        one launch per time step (step_kernels.py); any shape, the projection (proj_size) included
    persistent  one cooperative launch for all T steps (persistent_kernels.py), grid ≤ SM count, a grid barrier

RNNFUSED_TRITON_PATH=step|persistent|auto forces a path (auto by default). On a GPU, auto takes the persistent
path except with a projection (h_t = r_t W_hrᵀ needs every unit of r_t before any program can start step t+1's
GEMM: a second grid-wide dependency per step, done by torch.matmul between the per-step launches). In the
interpreter, whose programs run one after another, the persistent form runs with ONE program owning every tile
(its barrier is a no-op) and is taken only when asked for; auto is the per-step path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["PATH_ENV", "PathChoice", "choose_path", "num_tiles"]

PATH_ENV = "RNNFUSED_TRITON_PATH"


@dataclass(frozen=True)
class PathChoice:
    path: str          # "step" or "persistent"
    reason: str        # why, in words (shown by tests and benchmarks)

    def num_programs(self, tiles: int, device: torch.device, interpreted: bool) -> int:
        """Grid size: all tiles for the step path; ≤ SM count (1 in the interpreter) for the persistent path."""
        if self.path == "step":
            return tiles
        if interpreted or device.type != "cuda":
            return 1
        return max(1, min(tiles, torch.cuda.get_device_properties(device).multi_processor_count))


def num_tiles(B: int, H: int, block_b: int, block_h: int) -> int:
    return -(-B // block_b) * -(-H // block_h)


def choose_path(has_projection: bool, interpreted: bool) -> PathChoice:
    forced = os.environ.get(PATH_ENV, "auto").strip().lower() or "auto"
    if forced not in ("auto", "step", "persistent"):
        raise ValueError(f"{PATH_ENV} must be 'auto', 'step' or 'persistent', got {forced!r}")
    if has_projection:
        return PathChoice("step", "the projection (proj_size) runs as torch.matmul between per-step launches")
    if forced == "step":
        return PathChoice("step", f"{PATH_ENV}=step")
    if forced == "persistent":
        return PathChoice("persistent", f"{PATH_ENV}=persistent" + (" (one program: interpreter)" if interpreted
                                                                     else ""))
    if interpreted:
        return PathChoice("step", "interpreter: the persistent form runs only when asked for")
    return PathChoice("persistent", "GPU: one launch for all steps")
