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
from typing import Callable, Dict, Optional

import torch

from . import _extension
from ._autograd import reference_outputs
from ._layer_norm_ops import reference_outputs as layer_norm_reference
from ._backend_base import CustomOpBackend, LayerBackend
from ._transforms import needs_reference_math

__all__ = ["BACKENDS", "ENV_VAR", "LayerBackend", "resolve_backend", "get_backend", "available_backends",
           "unavailable_reason", "register_backend"]

ENV_VAR = "RNNFUSED_BACKEND"
BACKENDS = ("reference", "cpu", "cuda", "triton")


class ReferenceBackend(LayerBackend):
    name = "reference"

    def unavailable(self, device, dtype):
        return None

    def run(self, kind, x):
        out = reference_outputs(kind, x)
        return (out[0], out[1], out[2] if kind.has_cell_state else None)

    def run_layer_norm(self, kind, x):
        out = layer_norm_reference(kind, x)
        return (out[0], out[1], out[2] if kind.has_cell_state else None)


def _cpu_unavailable(device, dtype):
    if not _extension.extension_loaded():
        return _extension.EXTENSION_ERROR
    if device.type != "cpu":
        return f"the cpu backend runs CPU tensors, got a tensor on {device}"
    return None


def _cuda_unavailable(device, dtype):
    if not _extension.extension_loaded():
        return _extension.EXTENSION_ERROR
    if device.type != "cuda":
        return f"the cuda backend runs CUDA tensors, got a tensor on {device}"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available here"
    if not _extension.cuda_built():
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
    """Adds (or replaces) a backend under ``backend.name``; it then takes part in ``backend=`` lookups by name.

    Args:
        backend: a :class:`LayerBackend` whose ``name`` is one of ``BACKENDS``.

    Example::

        >>> rnnfused.backends.register_backend(MyTritonBackend())   # replaces the built-in "triton" backend
    """
    _REGISTRY[backend.name] = backend


def _lookup(name: str) -> Optional[LayerBackend]:
    if name not in _REGISTRY and name in _LAZY and name not in _LAZY_ERRORS:
        try:
            register_backend(_LAZY[name]())
        except Exception as exc:  # ImportError of triton, or a failure while registering
            _LAZY_ERRORS[name] = f"the {name} backend could not be loaded: {type(exc).__name__}: {exc}"
    return _REGISTRY.get(name)


def unavailable_reason(name: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Optional[str]:
    """None when backend ``name`` can run tensors of this device and dtype here, else a sentence saying why not
    (not built, no GPU, wrong device, Triton missing, …).

    Args:
        name: a backend name from ``BACKENDS`` (anything else gives a reason too, never an exception).
        device: the tensors' device (``torch.device`` or a string such as ``"cuda:1"``).
        dtype: the tensors' floating dtype.

    Returns:
        None, or the reason as one sentence.

    Example::

        >>> rnnfused.backends.unavailable_reason("cuda", "cpu")
        'the cuda backend runs CUDA tensors, got a tensor on cpu'
    """
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected one of {BACKENDS} or 'auto'"
    backend = _lookup(name)
    if backend is None:
        return _LAZY_ERRORS.get(name, f"the {name} backend is not installed")
    return backend.unavailable(torch.device(device), dtype)


def available_backends(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> list:
    """The backends that can run tensors of ``device`` and ``dtype`` here (``python -m rnnfused.info`` prints the
    reasons for the others).

    Args:
        device: the tensors' device (default ``"cpu"``).
        dtype: the tensors' dtype (default float32).

    Returns:
        A list of backend names, in ``BACKENDS`` order.

    Example::

        >>> rnnfused.available_backends("cpu")
        ['reference', 'cpu']
    """
    return [name for name in BACKENDS if unavailable_reason(name, device, dtype) is None]


def resolve_backend(backend: Optional[str], device: torch.device | str, dtype: torch.dtype) -> str:
    """The backend name that runs tensors of ``device``/``dtype``, by the rule in this module's docstring.

    Args:
        backend: a name from ``BACKENDS``, ``"auto"``, or None (then ``RNNFUSED_BACKEND``, else ``"auto"``).
        device, dtype: of the tensors to run.

    Returns:
        The backend name (``auto`` resolved): ``cuda`` or ``triton`` on CUDA tensors, ``cpu`` on CPU tensors, else
        ``reference``.

    Raises:
        RuntimeError: a backend named explicitly (argument or environment) that cannot run here, with the reason.

    Example::

        >>> rnnfused.resolve_backend(None, "cpu", torch.float32)
        'cpu'
    """
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
    """The :class:`LayerBackend` object :func:`resolve_backend` selects (same arguments and errors), except while a
    torch.func transform or forward-mode AD is in play: then the reference backend, the one that supports them
    (rnnfused/_transforms.py).

    Example::

        >>> rnnfused.backends.get_backend("reference", "cpu", torch.float64).name
        'reference'
    """
    name = resolve_backend(backend, device, dtype)
    return _REGISTRY["reference" if needs_reference_math() else name]
