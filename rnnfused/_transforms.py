"""When the fused kernels step aside: torch.func transforms and forward-mode AD.

The custom ops get their autograd from ``torch.library.register_autograd``, which torch.func's transforms cannot run
(``grad``/``vjp``/``jacrev`` raise "must override the setup_context staticmethod"), and they have no forward-mode
formula, so under ``jvp``/``jacfwd`` or with ``torch.autograd.forward_ad`` dual tensors a tangent would pass through
them as zero: silently wrong. While either is in play, the layers and cells compute the reference equations
(rnnfused/reference.py: plain PyTorch ops, which every transform differentiates and batches) instead.
"""
from __future__ import annotations

import torch
from torch.autograd import forward_ad

__all__ = ["needs_reference_math"]


def needs_reference_math() -> bool:
    """True while a torch.func transform is active or a forward-AD dual level is open (eager only: torch.compile and
    torch.export trace the ops with their registered fakes and autograd)."""
    if torch.compiler.is_compiling():
        return False
    # forward_ad._current_level is the open dual level (-1: none); read at call time, it changes with `dual_level()`.
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0
