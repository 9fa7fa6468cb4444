"""The "triton" backend: the Triton kernels of triton_kernels/ (installed as rnnfused._triton) as a LayerBackend.

Importing this module registers the rnnfused::*_triton ops (fakes and autograd included). It is imported lazily by
rnnfused.backends the first time the "triton" backend is looked up, so `import rnnfused` never needs triton.
"""
from __future__ import annotations

import torch

from ._triton import ops as _triton_ops  # noqa: F401  (registers the ops)
from ._triton.launch_common import interpreted
from ._backend_base import CustomOpBackend

__all__ = ["BACKEND"]


def _unavailable(device: torch.device, dtype: torch.dtype):
    if interpreted():
        if device.type == "cpu":
            return None
        return (f"the triton kernels were loaded under TRITON_INTERPRET=1 (the CPU interpreter), so they run CPU "
                f"tensors only, got a tensor on {device}")
    if device.type == "cpu":
        return ("the triton backend runs CPU tensors only in the interpreter: set TRITON_INTERPRET=1 before "
                "rnnfused._triton is first imported")
    if device.type != "cuda":
        return f"the triton backend runs CUDA tensors, got a tensor on {device}"
    return None


BACKEND = CustomOpBackend("triton", "_triton", _unavailable)
