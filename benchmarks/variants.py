"""Kernel-path variants of the rnnfused backends: one table, one row per variant the suite times separately.

A backend with several kernel paths (the CUDA backend's step-wise loop, CUDA-graph replay and persistent kernels;
the Triton backend's per-step and persistent kernels) is measured once per row below, as ``backend:variant``
(``triton:persistent``); a row named ``""`` keeps the plain backend name (the backend's own choice of path). The
switches are environment variables the backends read at call time; the runner sets them while the variant runs
(:func:`patched_env`). A backend without rows is measured once, as ``auto`` picks its path.

To time a new kernel path, add its row here.
"""
from __future__ import annotations

import contextlib
import os
from types import MappingProxyType
from typing import Dict, Iterator, List, Mapping, NamedTuple

__all__ = ["Variant", "VARIANTS", "variants_for", "patched_env"]


class Variant(NamedTuple):
    """One kernel path of a backend: its name in the results, the switches that force it, what it is."""

    name: str = ""                                    # "" = the backend's plain name
    env: Mapping[str, str] = MappingProxyType({})     # environment switches set while it runs
    description: str = ""


# backend -> its variants, in the order they are timed. Switches: RNNFUSED_CUDA_PATH / RNNFUSED_CUDA_GRAPHS
# (rnnfused/_cuda.py), RNNFUSED_TRITON_PATH (triton_kernels/dispatch.py).
VARIANTS: Dict[str, List[Variant]] = {
    "cuda": [
        Variant("", {"RNNFUSED_CUDA_GRAPHS": "0", "RNNFUSED_CUDA_PATH": "auto"}, "auto path (persistent where it fits)"),
        Variant("stepwise", {"RNNFUSED_CUDA_GRAPHS": "0", "RNNFUSED_CUDA_PATH": "stepwise"},
                "step loop launched from the host"),
        Variant("graphs", {"RNNFUSED_CUDA_GRAPHS": "1", "RNNFUSED_CUDA_PATH": "stepwise"},
                "step loop replayed from CUDA graphs"),
        Variant("persistent", {"RNNFUSED_CUDA_GRAPHS": "0", "RNNFUSED_CUDA_PATH": "persistent"},
                "one cooperative launch for all steps"),
    ],
    "triton": [
        Variant("step", {"RNNFUSED_TRITON_PATH": "step"}, "one fused launch per time step"),
        Variant("persistent", {"RNNFUSED_TRITON_PATH": "persistent"}, "one launch for all time steps, grid barrier"),
    ],
}


def variants_for(backend: str) -> List[Variant]:
    """The variants to time for ``backend`` (a single unnamed one when the table has no row for it)."""
    return VARIANTS.get(backend) or [Variant()]


@contextlib.contextmanager
def patched_env(env: Mapping[str, str]) -> Iterator[None]:
    """Sets environment variables for the duration of the block and restores the previous values."""
    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update({k: str(v) for k, v in env.items()})
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
