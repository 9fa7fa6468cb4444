"""The work every implementation does for one config: same weights, same inputs, same upstream gradient.

The baseline ``nn.LSTM``/``nn.GRU``/``nn.RNN`` is built first (seeded); every other implementation is built from it
(its state_dict copied), so all of them hold identical weights. Inputs ``x`` [T, B, I] and upstream gradients
``dy`` [T, B, D*H] come from a seeded generator on the device; a small pool of them is rotated through the timed
repetitions, in the same order for every implementation.

    fwd     ``with torch.no_grad(): module(x)``
    fwdbwd  ``out, _ = module(x); torch.autograd.grad(out, [x, *weights], dy)`` — the full layer's backward,
            dX included (fresh gradient tensors each call: nothing accumulates into ``.grad``)
"""
from __future__ import annotations

import copy
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .check import worst_error
from .config import BenchConfig

__all__ = ["TORCH_MODULES", "Workload", "make_baseline", "forward_tensors"]

TORCH_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
SEED = 20240611


def make_baseline(cfg: BenchConfig, device: torch.device, dtype: Optional[torch.dtype] = None) -> nn.RNNBase:
    """The nn.* module of ``cfg`` (seeded init on the CPU, then moved), cuDNN's flat weight buffer refreshed."""
    torch.manual_seed(SEED + cfg.hidden + 7 * cfg.input_size)
    m = TORCH_MODULES[cfg.cell](cfg.input_size, cfg.hidden, num_layers=cfg.layers, bidirectional=cfg.bidirectional)
    m = m.to(device=device, dtype=dtype or cfg.torch_dtype)
    m.flatten_parameters()
    return m


def forward_tensors(out) -> List[Tensor]:
    """output, h_n (and c_n) of an nn.*-style ``(output, hidden)`` result."""
    output, hidden = out
    return [output] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


class Workload:
    """Baseline, input pool and upstream gradients of one shape (one config without its mode)."""

    def __init__(self, cfg: BenchConfig, device: torch.device, pool: int = 2):
        self.cfg = cfg
        self.device = device
        self.baseline = make_baseline(cfg, device)
        g = torch.Generator(device=device).manual_seed(SEED)
        dtype = cfg.torch_dtype
        T, B = cfg.seq_len, cfg.batch
        out_features = cfg.directions * cfg.hidden
        self.inputs = [torch.randn(T, B, cfg.input_size, generator=g, device=device, dtype=dtype).requires_grad_()
                       for _ in range(pool)]
        self.upstream = [torch.randn(T, B, out_features, generator=g, device=device, dtype=dtype)
                         for _ in range(pool)]
        self._truth = None

    # ------------------------------------------------------------------------------------------------ running
    def call(self, module: nn.Module, mode: str, index: int = 0):
        """One measured call: tensors it produced (outputs, then gradients for fwdbwd)."""
        x = self.inputs[index % len(self.inputs)]
        if mode == "fwd":
            with torch.no_grad():
                return forward_tensors(module(x))
        out = module(x)
        tensors = forward_tensors(out)
        grads = torch.autograd.grad(tensors[0], [x] + list(module.parameters()),
                                    self.upstream[index % len(self.upstream)])
        return [t.detach() for t in tensors] + list(grads)

    def step(self, module: nn.Module, mode: str) -> Callable[[int], None]:
        """``fn(i)`` for the timers: repetition i uses input/upstream pair i mod pool."""

        def fn(i: int) -> None:
            self.call(module, mode, i)

        return fn

    def tensor_names(self, mode: str) -> List[str]:
        names = ["output", "h_n"] + (["c_n"] if self.cfg.cell == "lstm" else [])
        if mode == "fwdbwd":
            names += ["grad input"] + [f"grad {n}" for n, _ in self.baseline.named_parameters()]
        return names

    def error_vs_truth(self, module: nn.Module, mode: str) -> Tuple[float, str]:
        """(worst relative error of one call of ``module`` vs the float64 truth, name of that tensor)."""
        return worst_error(self.call(module, mode), self.truth(mode), self.tensor_names(mode))

    # -------------------------------------------------------------------------------------------------- truth
    def truth(self, mode: str) -> List[Tensor]:
        """The baseline's float64 results on the same weights, input 0 and upstream 0 (computed once per shape)."""
        if self._truth is None:
            ref = copy.deepcopy(self.baseline).to(torch.float64)
            ref.flatten_parameters()
            x = self.inputs[0].detach().to(torch.float64).requires_grad_()
            out = forward_tensors(ref(x))
            grads = torch.autograd.grad(out[0], [x] + list(ref.parameters()),
                                        self.upstream[0].to(torch.float64))
            self._truth = [t.detach() for t in out] + list(grads)
            del ref
        n_forward = 3 if self.cfg.cell == "lstm" else 2
        return self._truth if mode == "fwdbwd" else self._truth[:n_forward]

    def release(self) -> None:
        self._truth = None
        self.inputs.clear()
        self.upstream.clear()
