"""What the suite measures: the baseline and the implementations compared with it.

    cudnn / torch-cpu    the baseline: nn.LSTM/GRU/RNN (cuDNN, weights flattened, on a GPU; PyTorch's CPU kernels
                         without one); always measured, first, since speedups and checks refer to it
    cpu, cuda, triton …  rnnfused's Fused* modules with ``backend=`` that backend; one impl per kernel-path variant
                         when the backend has several (``triton:stepwise``, ``triton:persistent``: the table in
                         variants.py; its opt-in rows, e.g. ``cuda:persistent-ll``, only when named)
    reference            rnnfused's plain-PyTorch equations (slow: measured only when asked for)
    cell-loop            the textbook nn.LSTMCell/GRUCell/RNNCell Python loop over time (``--with-cell-loop``)
    cpu+resets1% …       a backend's module with a feature nn.* lacks (features.py; opt-in, not spot-checked)

:func:`discover` builds the list for a device from ``rnnfused.available_backends`` and the variant table, so a
new backend or kernel path shows up without changes here.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence

import torch
from torch import nn

from rnnfused._cells import CellKind, cell_kind

from . import features
from .config import BenchConfig
from .features import Feature
from .variants import Variant, variants_for

__all__ = ["Impl", "BaselineImpl", "FusedImpl", "FeatureImpl", "CellLoopImpl", "discover", "select",
           "baseline_name"]


@dataclass
class Impl:
    name: str
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    slow: bool = False                  # left out unless asked for by name (its backend's name counts)
    opt_in: bool = False                # left out unless asked for by its own name or a pattern matching it
    is_baseline: bool = False
    backend: str = ""
    variant: str = ""
    comparable: bool = True             # its results are nn.*'s (spot-checked against the baseline's truth)

    def unavailable(self, cfg: BenchConfig, device: torch.device) -> Optional[str]:
        """None when this implementation can run ``cfg`` here, else why not."""
        return None

    def build(self, baseline: nn.RNNBase) -> nn.Module:
        """A module holding a copy of ``baseline``'s weights that returns ``(output, hidden)`` like nn.*."""
        raise NotImplementedError

    def note(self, cfg: BenchConfig) -> str:
        """A short remark on this implementation for ``cfg`` (shown in the table and CSV)."""
        return ""


def baseline_name(device: torch.device) -> str:
    return "cudnn" if device.type == "cuda" else "torch-cpu"


class BaselineImpl(Impl):
    """nn.LSTM/GRU/RNN itself: cuDNN on a GPU, PyTorch's CPU kernels on the CPU."""

    def __init__(self, device: torch.device):
        what = "nn.* on cuDNN (flatten_parameters)" if device.type == "cuda" else "nn.* on PyTorch's CPU kernels"
        super().__init__(baseline_name(device), what, is_baseline=True)

    def build(self, baseline):
        return baseline


class FusedImpl(Impl):
    """rnnfused.Fused* with ``backend=`` one backend, optionally forced onto one kernel path (a variant)."""

    def __init__(self, backend: str, variant: Variant = Variant(), slow: bool = False):
        name = f"{backend}:{variant.name}" if variant.name else backend
        super().__init__(name, variant.description or f"rnnfused backend={backend!r}", dict(variant.env), slow,
                         opt_in=variant.opt_in, backend=backend, variant=variant.name)

    def unavailable(self, cfg, device):
        from rnnfused.backends import unavailable_reason

        return unavailable_reason(self.backend, device, cfg.torch_dtype)

    def build(self, baseline):
        import rnnfused

        cls = getattr(rnnfused, _kind_of(baseline).module)
        return cls.from_module(baseline, backend=self.backend)

    def note(self, cfg):
        # The cuda backend's automatic choice: say which path it takes for this config.
        if self.backend != "cuda" or self.variant:
            return ""
        try:
            from rnnfused import cuda_path

            return "path=" + str(cuda_path(cfg.kind.name, cfg.seq_len, cfg.batch, cfg.input_size, cfg.hidden,
                                           dtype=cfg.torch_dtype, lengths=cfg.packed))
        except Exception as exc:  # noqa: BLE001 - a note must never stop a benchmark
            return f"path=? ({type(exc).__name__})"


class FeatureImpl(Impl):
    """A backend's fused module with a feature nn.* does not have (features.py): timed, not compared with nn.*."""

    def __init__(self, backend: str, feature: Feature, slow: bool = False):
        super().__init__(f"{backend}+{feature.name}", feature.description, slow=slow, opt_in=True, backend=backend,
                         variant=feature.name, comparable=False)
        self.feature = feature

    def unavailable(self, cfg, device):
        from rnnfused.backends import unavailable_reason

        return (unavailable_reason(self.backend, device, cfg.torch_dtype)
                or features.unavailable(self.feature, cfg.kind.name, cfg.packed))

    def build(self, baseline):
        import rnnfused

        kind = _kind_of(baseline)
        module = kind.layer_norm_module if self.feature.layer_norm else kind.module
        return features.build(self.feature, baseline, self.backend, getattr(rnnfused, module))

    def note(self, cfg):
        return "not compared with nn.* (a feature it lacks)"


class CellLoop(nn.Module):
    """The textbook loop: one nn.*Cell call per time step, outputs stacked (one layer, one direction)."""

    def __init__(self, baseline: nn.RNNBase):
        super().__init__()
        kind = _kind_of(baseline)
        w = baseline.weight_ih_l0
        self.is_lstm = kind.has_cell_state
        extra = {"nonlinearity": kind.nonlinearity} if kind.nonlinearity else {}
        self.cell = kind.torch_cell(baseline.input_size, baseline.hidden_size, bias=baseline.bias,
                                    device=w.device, dtype=w.dtype, **extra)
        # Same parameter order as nn.*'s layer 0: weight_ih, weight_hh, bias_ih, bias_hh.
        self.cell.load_state_dict({k[: -len("_l0")]: v for k, v in baseline.state_dict().items()})

    def forward(self, x):
        state = None
        outputs = []
        for t in range(x.shape[0]):
            state = self.cell(x[t], state)
            outputs.append(state[0] if self.is_lstm else state)
        out = torch.stack(outputs)
        hidden = (state[0].unsqueeze(0), state[1].unsqueeze(0)) if self.is_lstm else state.unsqueeze(0)
        return out, hidden


class CellLoopImpl(Impl):
    """The textbook nn.*Cell loop (``--with-cell-loop``)."""

    def __init__(self):
        super().__init__("cell-loop", "nn.*Cell called in a Python loop over time steps")

    def unavailable(self, cfg, device):
        if cfg.layers != 1 or cfg.bidirectional:
            return "the cell loop runs one unidirectional layer"
        if cfg.packed:
            return "the cell loop runs full-length sequences (no PackedSequence)"
        return None

    def build(self, baseline):
        return CellLoop(baseline)


def _kind_of(module: nn.RNNBase) -> CellKind:
    """The registry entry of an nn.LSTM/GRU/RNN (its mode: LSTM, GRU, RNN_TANH, RNN_RELU)."""
    return cell_kind(module.mode)


def _slow(backend: str, device: torch.device) -> bool:
    # The reference is plain PyTorch ops; Triton on CPU tensors runs in its interpreter.
    return backend == "reference" or (backend == "triton" and device.type == "cpu")


def discover(device: torch.device, dtypes: Sequence[torch.dtype] = (torch.float32,),
             with_cell_loop: bool = False) -> List[Impl]:
    """Baseline first, then every rnnfused backend that runs on ``device`` for one of ``dtypes`` (each of its
    variants), then the cell loop if asked for."""
    from rnnfused.backends import BACKENDS, unavailable_reason

    impls: List[Impl] = [BaselineImpl(device)]
    for backend in BACKENDS:
        runnable = [dt for dt in dtypes if unavailable_reason(backend, device, dt) is None]
        if not runnable:
            continue
        for variant in variants_for(backend):
            impls.append(FusedImpl(backend, variant, slow=_slow(backend, device)))
        impls += [FeatureImpl(backend, f, slow=_slow(backend, device)) for f in features.FEATURES]
    if with_cell_loop:
        impls.append(CellLoopImpl())
    return impls


def select(impls: Sequence[Impl], wanted: Optional[Sequence[str]], device: Optional[torch.device] = None,
           also: Sequence[str] = ()) -> List[Impl]:
    """The baseline plus the impls named in ``wanted`` — or, without ``wanted``, every impl that is neither slow nor
    opt-in — plus those named in ``also``. A backend name selects its variants but the opt-in ones; a pattern with
    ``*`` (``cuda:persistent-*``) selects every impl it matches. An unknown name is an error saying what exists
    (and, for a backend that cannot run on ``device``, why)."""
    chosen = set(_names(impls, also, device))
    if wanted:
        chosen.update(_names(impls, wanted, device))
    else:
        chosen.update(i.name for i in impls if not (i.slow or i.opt_in))
    return [i for i in impls if i.is_baseline or i.name in chosen]


def _names(impls: Sequence[Impl], wanted: Sequence[str], device: Optional[torch.device]) -> List[str]:
    aliases = {"baseline"} | {i.name for i in impls if i.is_baseline}
    names: List[str] = []
    for w in wanted:
        hits = [i.name for i in impls
                if i.name == w or (i.backend == w and not i.opt_in) or ("*" in w and fnmatch.fnmatchcase(i.name, w))]
        if not hits and w not in aliases:
            why = ""
            if device is not None:
                from rnnfused.backends import BACKENDS, unavailable_reason

                if w in BACKENDS:
                    why = f" ({unavailable_reason(w, device) or 'not available for the requested dtypes'})"
            available = ", ".join(i.name for i in impls)
            raise ValueError(f"implementation {w!r} cannot be measured here{why}; available: {available}")
        names += hits
    return names
