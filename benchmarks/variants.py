"""Kernel-path variants of the rnnfused backends: one table, one row per variant the suite times separately.

A backend with several kernel paths (the CUDA backend's step-wise loop, CUDA-graph replay and persistent kernels;
the Triton backend's per-step and persistent kernels) is measured once per row below, as ``backend:variant``
(``triton:persistent``); a row named ``""`` keeps the plain backend name (the backend's own choice of path). The
switches are environment variables the backends read at call time; the runner sets them while the variant runs
(:func:`patched_env`). A backend without rows is measured once, as ``auto`` picks its path.

Rows marked ``opt_in`` (the persistent kernels' synchronisation variants, ``cuda:persistent-<variant>``: five more
timings per config) run only when named or matched by a pattern (``--impls 'cuda:persistent-*'``), never as part
of their backend's name.

To time a new kernel path, add its row here.
"""
from __future__ import annotations

import contextlib
import os
from types import MappingProxyType
from typing import Dict, Iterator, List, Mapping, NamedTuple

from rnnfused._cuda import GRAPHS_ENV_VAR, PATH_ENV_VAR, PERSISTENT_VARIANTS, TUNING_ENV_VAR

__all__ = ["Variant", "VARIANTS", "variants_for", "patched_env"]


class Variant(NamedTuple):
    """One kernel path of a backend: its name in the results, the switches that force it, what it is."""

    name: str = ""                                    # "" = the backend's plain name
    env: Mapping[str, str] = MappingProxyType({})     # environment switches set while it runs
    description: str = ""
    opt_in: bool = False                              # timed only when asked for by name or pattern


_PLAIN = {GRAPHS_ENV_VAR: "0"}   # no CUDA-graph replay unless the row is about it

# backend -> its variants, in the order they are timed. Switches: RNNFUSED_PATH (both backends), RNNFUSED_CUDA_GRAPHS,
# RNNFUSED_PERSISTENT_TUNING (rnnfused/_cuda.py).
VARIANTS: Dict[str, List[Variant]] = {
    "cuda": [
        Variant("", {**_PLAIN, PATH_ENV_VAR: "auto"}, "auto path (persistent where it fits)"),
        Variant("stepwise", {**_PLAIN, PATH_ENV_VAR: "stepwise"}, "step loop launched from the host"),
        Variant("graphs", {GRAPHS_ENV_VAR: "1", PATH_ENV_VAR: "stepwise"}, "step loop replayed from CUDA graphs"),
        Variant("persistent", {**_PLAIN, PATH_ENV_VAR: "persistent"}, "one cooperative launch for all steps"),
    ] + [
        Variant(f"persistent-{v}", {**_PLAIN, PATH_ENV_VAR: "persistent", TUNING_ENV_VAR: v},
                f"persistent kernels, {v} synchronisation", opt_in=True)
        for v in PERSISTENT_VARIANTS
    ],
    "triton": [
        Variant("stepwise", {PATH_ENV_VAR: "stepwise"}, "one fused launch per time step"),
        Variant("persistent", {PATH_ENV_VAR: "persistent"}, "one launch for all time steps, grid barrier"),
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
