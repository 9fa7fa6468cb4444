"""Loading the compiled extension rnnfused._C (C++ CPU ops, and CUDA ops when built with CUDA), after checking that
it was built against the torch installed now.

A compiled PyTorch extension links against torch's C++ library, whose ABI changes between torch releases: an
``_C`` built for torch 2.13 loaded into torch 2.12 fails with an undefined symbol at best, and can crash at worst.
setup.py therefore writes ``rnnfused/_build_info.py`` next to ``_C`` (the torch version, its CUDA version and
whether the CUDA kernels were built), and :func:`_load` compares it with the running torch *before*
importing ``_C``:

* another torch minor release (2.12 vs 2.13), or a torch without CUDA (or with another CUDA major version) for an
  extension with CUDA kernels: ``_C`` is not imported, a ``RuntimeWarning`` says so at ``import rnnfused``, and
  the same text is ``rnnfused.EXTENSION_ERROR`` (the error of any backend that needs ``_C``); the ``reference``
  backend still runs;
* another patch release or build tag of the same minor release (2.13.0 vs 2.13.1): ``_C`` is imported; if that
  fails, the error names both versions.
"""
from __future__ import annotations

import importlib
import re
import warnings
from types import ModuleType
from typing import Dict, Optional, Tuple

import torch

__all__ = ["EXTENSION_ERROR", "extension", "extension_loaded", "cuda_built", "build_info", "torch_mismatch",
           "REBUILD_HINT"]

REBUILD_HINT = ("Rebuild rnnfused against the installed torch (in its source folder: `pip install "
                "--no-build-isolation --force-reinstall --no-deps .`), or install the torch it was built against.")


def build_info() -> Optional[Dict[str, object]]:
    """What setup.py recorded when it built ``_C`` (None when the file is absent, e.g. in a source tree that was
    never built).

    Returns:
        ``{"torch": "2.13.0+cpu", "torch_cuda": None | "13.0", "with_cuda": bool, "cuda_arch_list": str | None}``
    """
    try:
        info = importlib.import_module("rnnfused._build_info")
    except ImportError:
        return None
    return {"torch": info.TORCH_VERSION, "torch_cuda": info.TORCH_CUDA_VERSION, "with_cuda": info.WITH_CUDA,
            "cuda_arch_list": info.CUDA_ARCH_LIST}


def _major_minor(version: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_mismatch(built: Dict[str, object], torch_version: str, torch_cuda: Optional[str]) -> Optional[str]:
    """Why an ``_C`` with build info ``built`` must not be loaded into torch ``torch_version`` (with CUDA
    ``torch_cuda``, None for a CPU-only torch); None when it may."""
    built_torch = str(built["torch"])
    if _major_minor(built_torch) != _major_minor(torch_version):
        return (f"rnnfused._C was built against torch {built_torch}, but torch {torch_version} is installed; a "
                f"compiled extension only works with the torch release it was built against. {REBUILD_HINT}")
    if built.get("with_cuda"):
        built_cuda = str(built.get("torch_cuda"))
        if torch_cuda is None:
            return (f"rnnfused._C was built with CUDA kernels against torch {built_torch} (CUDA {built_cuda}), but "
                    f"the installed torch {torch_version} has no CUDA. {REBUILD_HINT}")
        if built_cuda.split(".")[0] != str(torch_cuda).split(".")[0]:
            return (f"rnnfused._C was built against torch {built_torch} with CUDA {built_cuda}, but the installed "
                    f"torch {torch_version} uses CUDA {torch_cuda}. {REBUILD_HINT}")
    return None


def _load() -> Tuple[Optional[ModuleType], Optional[str]]:
    """``(rnnfused._C, None)``, or ``(None, why it is not loaded)``. Importing ``_C`` registers the ops."""
    built = build_info()
    if built is not None:
        reason = torch_mismatch(built, torch.__version__, torch.version.cuda)
        if reason is not None:
            warnings.warn(reason + " Until then only the 'reference' backend runs.", RuntimeWarning, stacklevel=3)
            return None, reason
    try:
        return importlib.import_module("rnnfused._C"), None
    except ImportError as exc:
        if built is None:
            return None, (f"rnnfused._C could not be imported ({exc}). Build it with `pip install "
                          "--no-build-isolation -e .` in the repository (needs a C++ compiler; CUDA kernels also "
                          "need nvcc and a CUDA build of torch).")
        return None, (f"rnnfused._C (built against torch {built['torch']}, installed torch {torch.__version__}) "
                      f"could not be imported: {exc}. {REBUILD_HINT}")


# Importing _C registers torch.ops.rnnfused.*; it is skipped (with a warning) when the installed torch is not the one
# _C was built against.
_C, EXTENSION_ERROR = _load()


def extension() -> Optional[ModuleType]:
    """The module rnnfused._C, or None when it is not loaded (EXTENSION_ERROR says why)."""
    return _C


def extension_loaded() -> bool:
    """Whether the compiled ops (rnnfused._C) are loaded; when not, only the ``reference`` backend runs.

    Returns:
        True or False (``rnnfused.EXTENSION_ERROR`` then says why: not built, or built for another torch).

    Example::

        >>> rnnfused.extension_loaded() or print(rnnfused.EXTENSION_ERROR)
    """
    return _C is not None


def cuda_built() -> bool:
    """Whether the loaded extension holds the CUDA kernels (the ``cuda`` backend).

    Returns:
        True for a CUDA build (``rnnfused.cuda_arches()`` lists its targets); False for a CPU-only build or none.

    Example::

        >>> rnnfused.cuda_built()
        False
    """
    return _C is not None and bool(getattr(_C, "built_with_cuda", False))
