"""Loading the compiled extension rnnfused._C (C++ CPU ops, and CUDA ops when built with CUDA)."""
from __future__ import annotations

from typing import Optional

try:
    from . import _C  # noqa: F401  (importing registers torch.ops.rnnfused.*)

    EXTENSION_ERROR: Optional[str] = None
except ImportError as exc:  # pragma: no cover - depends on the build
    _C = None
    EXTENSION_ERROR = (
        f"rnnfused._C could not be imported ({exc}). Build it with `pip install --no-build-isolation -e .` in the "
        "repository (needs a C++ compiler; CUDA kernels also need nvcc and a CUDA build of torch)."
    )

__all__ = ["EXTENSION_ERROR", "extension", "extension_loaded", "cuda_built"]


def extension():
    """The module rnnfused._C, or None when it could not be imported (EXTENSION_ERROR says why)."""
    return _C


def extension_loaded() -> bool:
    return _C is not None


def cuda_built() -> bool:
    return _C is not None and bool(getattr(_C, "built_with_cuda", False))
