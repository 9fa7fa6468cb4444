"""Kernel-path variants of an rnnfused backend, for the benchmark to measure one by one.

A backend may have several kernel paths (the Triton backend's per-step and persistent kernels, the CUDA backend's
step-wise loop launched from the host or replayed from CUDA graphs, its persistent kernels …). Each path the
suite should time separately is a :class:`Variant`: a name, and the environment switches that force that path while
the variant runs (the backends read their switches at call time). The impl is then named ``backend:variant``
(``triton:persistent``); a variant named ``""`` keeps the plain backend name.

How a variant list is found for a backend, first hit wins:

1. **The backend's own hook** — the hook to use when adding a path. The backend object
   (``rnnfused.backends.get_backend(name, ...)``, a ``LayerBackend``) defines::

       def benchmark_variants(self, device: torch.device) -> list:   # of benchmarks.variants.Variant, or of
           return [Variant("stepwise", {"RNNFUSED_X_PATH": "stepwise"}),     # dicts with keys name, env, description
                   Variant("persistent", {"RNNFUSED_X_PATH": "persistent"})]

   (``rnnfused`` itself needs no import of this package: plain dicts are accepted.)
2. **Providers**: functions ``provider(backend_name, device) -> list | None``, tried in order: the ones given in
   the environment variable ``RNNFUSED_BENCH_VARIANTS`` (comma-separated ``package.module:function``, for code
   outside this repository), those registered with :func:`register_variant_provider`, then the built-in ones below,
   which recognise the switches the backends expose today (each checks by import that the switch exists and returns
   None otherwise).
3. Nothing: the backend is measured once, as ``auto`` picks its path.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, Optional

import torch

from .config import BenchConfig

__all__ = ["Variant", "PROVIDERS_ENV", "register_variant_provider", "variants_for", "patched_env"]

PROVIDERS_ENV = "RNNFUSED_BENCH_VARIANTS"


@dataclass(frozen=True)
class Variant:
    name: str                                         # "" = the backend's plain name
    env: Mapping[str, str] = field(default_factory=dict)  # switches set while this variant runs
    description: str = ""
    # Optional: a short note per config (e.g. which path the backend's dispatch takes), shown in the CSV.
    note: Optional[Callable[[BenchConfig], str]] = None


Provider = Callable[[str, torch.device], Optional[List[Variant]]]
_REGISTERED: List[Provider] = []


def register_variant_provider(provider: Provider) -> Provider:
    """Adds a provider (usable as a decorator); registered providers are asked before the built-in ones."""
    _REGISTERED.append(provider)
    return provider


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


def _as_variant(item) -> Variant:
    if isinstance(item, Variant):
        return item
    if isinstance(item, Mapping):
        return Variant(str(item.get("name", "")), dict(item.get("env", {})), str(item.get("description", "")),
                       item.get("note"))
    name = getattr(item, "name", None)
    if name is None:
        raise TypeError(f"a benchmark variant must be a Variant, a dict or have .name/.env, got {item!r}")
    return Variant(str(name), dict(getattr(item, "env", {})), str(getattr(item, "description", "")),
                   getattr(item, "note", None))


# ----------------------------------------------------------------------------------------- built-in providers
def _module_attr(module: str, attr: str):
    """``module.attr`` if that module imports and has it, else None (the switch does not exist in this build)."""
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None


def _triton_paths(backend: str, device: torch.device) -> Optional[List[Variant]]:
    """The Triton backend's per-step and persistent kernels, forced by its dispatch switch."""
    env_var = _module_attr("rnnfused._triton.dispatch", "PATH_ENV") if backend == "triton" else None
    if env_var is None:
        return None
    return [Variant("stepwise", {env_var: "stepwise"}, "one fused launch per time step"),
            Variant("persistent", {env_var: "persistent"}, "one launch for all time steps, grid barrier")]


def _cuda_paths(backend: str, device: torch.device) -> Optional[List[Variant]]:
    """The CUDA backend on its automatic path, forced onto the step-wise path (step loop launched from the host, or
    replayed from CUDA graphs), and forced onto the persistent kernels."""
    graphs_var = _module_attr("rnnfused._cuda", "GRAPHS_ENV_VAR") if backend == "cuda" else None
    path_var = _module_attr("rnnfused._cuda", "PATH_ENV_VAR") if backend == "cuda" else None
    if graphs_var is None or path_var is None:
        return None
    path_of = _module_attr("rnnfused._cuda", "cuda_path")

    def note(cfg: BenchConfig) -> str:
        if path_of is None:
            return ""
        try:
            cell = "rnn_tanh" if cfg.cell == "rnn" else cfg.cell
            return "path=" + str(path_of(cell, cfg.seq_len, cfg.batch, cfg.input_size, cfg.hidden,
                                         dtype=cfg.torch_dtype))
        except Exception as exc:  # noqa: BLE001 - a note must never stop a benchmark
            return f"path=? ({type(exc).__name__})"

    return [Variant("", {graphs_var: "0", path_var: "auto"}, "auto path (persistent where it fits)", note),
            Variant("stepwise", {graphs_var: "0", path_var: "stepwise"}, "step loop launched from the host"),
            Variant("graphs", {graphs_var: "1", path_var: "stepwise"}, "step loop replayed from CUDA graphs"),
            Variant("persistent", {graphs_var: "0", path_var: "persistent"}, "one cooperative launch for all steps")]


BUILTIN_PROVIDERS: List[Provider] = [_triton_paths, _cuda_paths]


def _env_providers() -> List[Provider]:
    providers = []
    for spec in filter(None, (s.strip() for s in os.environ.get(PROVIDERS_ENV, "").split(","))):
        module, _, attr = spec.partition(":")
        if not attr:
            raise ValueError(f"{PROVIDERS_ENV} entries must read package.module:function, got {spec!r}")
        providers.append(getattr(importlib.import_module(module), attr))
    return providers


def variants_for(backend: str, device: torch.device, backend_obj=None) -> List[Variant]:
    """The variants to measure for ``backend`` on ``device`` (``[Variant("")]`` when it has none)."""
    hook = getattr(backend_obj, "benchmark_variants", None)
    found = hook(device) if callable(hook) else None
    if found is None:
        for provider in _env_providers() + _REGISTERED + BUILTIN_PROVIDERS:
            found = provider(backend, device)
            if found is not None:
                break
    variants = [_as_variant(v) for v in (found or [])] or [Variant("")]
    seen: Dict[str, Variant] = {}
    for v in variants:
        if v.name in seen:
            raise ValueError(f"backend {backend!r} lists the benchmark variant {v.name!r} twice")
        seen[v.name] = v
    return variants
