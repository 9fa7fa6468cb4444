"""Which implementation runs a layer: the one selection rule of the project.

    backend= argument  >  RNNFUSED_BACKEND environment variable  >  "auto"

``auto`` picks the fastest backend available for the tensors' device and dtype. A backend asked for by name that
cannot run here is an error that says why — never a silent fallback.

Backends (all run one layer-direction with the same signature, see :class:`LayerBackend`):
    reference  plain PyTorch ops (rnnfused/reference.py); any device and dtype; slow; the truth in tests
    cpu        C++ step-wise kernels (csrc/cpu) on CPU tensors
    cuda       CUDA kernels (csrc/cuda) on CUDA tensors, when the extension was built with CUDA
    triton     Triton kernels (triton_kernels/) on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from . import _ops
from ._cells import CellKind

__all__ = ["BACKENDS", "ENV_VAR", "LayerBackend", "resolve_backend", "get_backend", "available_backends",
           "unavailable_reason", "register_backend"]

ENV_VAR = "RNNFUSED_BACKEND"
BACKENDS = ("reference", "cpu", "cuda", "triton")


class LayerBackend:
    """One implementation of the layer ops.

    ``run(kind, x)`` takes :class:`rnnfused._ops.LayerInputs` and returns ``(output, h_n, c_n)`` (``c_n`` is None
    for cells without a cell state). ``unavailable(device, dtype)`` returns None when the backend can run such
    tensors here, else a sentence saying why not.
    """

    name: str = ""

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> Optional[str]:
        raise NotImplementedError

    def run(self, kind: CellKind, x: "_ops.LayerInputs") -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        raise NotImplementedError


class ReferenceBackend(LayerBackend):
    name = "reference"

    def unavailable(self, device, dtype):
        return None

    def run(self, kind, x):
        out = _ops.reference_outputs(kind, x)
        return (out[0], out[1], out[2] if kind.has_cell_state else None)


class CustomOpBackend(LayerBackend):
    """A backend made of the ``rnnfused::{kind}{suffix}`` custom ops (fake + autograd from _ops.register_family)."""

    def __init__(self, name: str, suffix: str, availability: Callable[[torch.device, torch.dtype], Optional[str]]):
        self.name = name
        self.suffix = suffix
        self._availability = availability

    def unavailable(self, device, dtype):
        return self._availability(device, dtype)

    def run(self, kind, x):
        outs = _ops.op_for(kind, self.suffix)(*_ops.forward_args(kind, x))
        return (outs[0], outs[1], outs[2] if kind.has_cell_state else None)


def _cpu_unavailable(device, dtype):
    if not _ops.extension_loaded():
        return _ops.EXTENSION_ERROR
    if device.type != "cpu":
        return f"the cpu backend runs CPU tensors, got a tensor on {device}"
    return None


def _cuda_unavailable(device, dtype):
    if not _ops.extension_loaded():
        return _ops.EXTENSION_ERROR
    if device.type != "cuda":
        return f"the cuda backend runs CUDA tensors, got a tensor on {device}"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available here"
    if not _ops.cuda_built():
        return ("rnnfused._C was built without CUDA; rebuild with a CUDA build of torch and nvcc "
                "(RNNFUSED_BUILD_CUDA=1 CUDA_HOME=/usr/local/cuda pip install --no-build-isolation -e .)")
    from ._cuda import kernel_image_unavailable  # a GPU the build has no kernel image for: auto moves on

    return kernel_image_unavailable(device)


_REGISTRY: Dict[str, LayerBackend] = {
    "reference": ReferenceBackend(),
    "cpu": CustomOpBackend("cpu", "", _cpu_unavailable),
    "cuda": CustomOpBackend("cuda", "", _cuda_unavailable),
}

def _load_triton_backend() -> LayerBackend:
    # A literal import statement, not importlib: torch.compile's tracer can run it (for real) when the first use of
    # the backend is inside a compiled function, and cannot trace importlib.
    from ._triton_backend import BACKEND

    return BACKEND


# Backends loaded on first use (they import optional packages), by name.
_LAZY: Dict[str, Callable[[], LayerBackend]] = {"triton": _load_triton_backend}
_LAZY_ERRORS: Dict[str, str] = {}

# Order in which "auto" tries backends, per device type: fastest first.
_AUTO_ORDER = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpu", "reference")}


def register_backend(backend: LayerBackend) -> None:
    _REGISTRY[backend.name] = backend


def _lookup(name: str) -> Optional[LayerBackend]:
    if name not in _REGISTRY and name in _LAZY and name not in _LAZY_ERRORS:
        try:
            register_backend(_LAZY[name]())
        except Exception as exc:  # ImportError of triton, or a failure while registering
            _LAZY_ERRORS[name] = f"the {name} backend could not be loaded: {type(exc).__name__}: {exc}"
    return _REGISTRY.get(name)


def unavailable_reason(name: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Optional[str]:
    """None when backend ``name`` can run tensors of this device and dtype here, else why it cannot."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected one of {BACKENDS} or 'auto'"
    backend = _lookup(name)
    if backend is None:
        return _LAZY_ERRORS.get(name, f"the {name} backend is not installed")
    return backend.unavailable(torch.device(device), dtype)


def available_backends(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> list:
    return [name for name in BACKENDS if unavailable_reason(name, device, dtype) is None]


def resolve_backend(backend: Optional[str], device: torch.device | str, dtype: torch.dtype) -> str:
    """The backend name that runs tensors of ``device``/``dtype``, by the rule in this module's docstring."""
    device = torch.device(device)
    name = backend if backend is not None else os.environ.get(ENV_VAR, "").strip() or "auto"
    name = name.lower()
    if name == "auto":
        for candidate in _AUTO_ORDER.get(device.type, ("reference",)):
            if unavailable_reason(candidate, device, dtype) is None:
                return candidate
        return "reference"
    reason = unavailable_reason(name, device, dtype)
    if reason is not None:
        source = "backend=" if backend is not None else f"{ENV_VAR}="
        raise RuntimeError(f"rnnfused: {source}{name!r} cannot run here: {reason}")
    return name


def get_backend(backend: Optional[str], device: torch.device | str, dtype: torch.dtype) -> LayerBackend:
    return _REGISTRY[resolve_backend(backend, device, dtype)]
