"""The work every implementation does for one config: same weights, same inputs, same upstream gradient.

The baseline ``nn.LSTM``/``nn.GRU``/``nn.RNN`` is built first (seeded); every other implementation is built from it
(its state_dict copied), so all of them hold identical weights. Inputs ``x`` [T, B, I] and upstream gradients
``dy`` [T, B, D*H] come from a seeded generator on the device; a small pool of them is rotated through the timed
repetitions, in the same order for every implementation. With variable lengths (``cfg.lengths == "var"``) the input
is a PackedSequence (lengths drawn once per shape, uniformly from [ceil(T/4), T], seeded) whose ``data``
[sum(lengths), I] is the leaf, and ``dy`` is [sum(lengths), D*H].

    fwd     ``with torch.no_grad(): module(x)``
    fwdbwd  ``out, _ = module(x); torch.autograd.grad(out, [x, *weights], dy)`` — the full layer's backward,
            dX included (fresh gradient tensors each call: nothing accumulates into ``.grad``)
"""
from __future__ import annotations

import copy
import math
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from .check import worst_error
from .config import BenchConfig

__all__ = ["Workload", "make_baseline", "forward_tensors", "draw_lengths"]

SEED = 20240611


def make_baseline(cfg: BenchConfig, device: torch.device, dtype: Optional[torch.dtype] = None) -> nn.RNNBase:
    """The nn.* module of ``cfg`` (seeded init on the CPU, then moved), cuDNN's flat weight buffer refreshed."""
    torch.manual_seed(SEED + cfg.hidden + 7 * cfg.input_size)
    kind = cfg.kind
    extra = {"nonlinearity": kind.nonlinearity} if kind.nonlinearity else {}
    m = kind.torch_module(cfg.input_size, cfg.hidden, num_layers=cfg.layers, bidirectional=cfg.bidirectional, **extra)
    m = m.to(device=device, dtype=dtype or cfg.torch_dtype)
    m.flatten_parameters()
    return m


def forward_tensors(out) -> List[Tensor]:
    """output (its ``data`` when packed), h_n (and c_n) of an nn.*-style ``(output, hidden)`` result."""
    output, hidden = out
    if isinstance(output, PackedSequence):
        output = output.data
    return [output] + (list(hidden) if isinstance(hidden, tuple) else [hidden])


def draw_lengths(seq_len: int, batch: int, seed: int = SEED) -> Tensor:
    """``batch`` sequence lengths drawn uniformly from [ceil(seq_len / 4), seq_len] (int64, CPU, seeded)."""
    low = max(1, math.ceil(seq_len / 4))
    g = torch.Generator().manual_seed(seed + seq_len + 31 * batch)
    return torch.randint(low, seq_len + 1, (batch,), generator=g, dtype=torch.int64)


Input = Union[Tensor, PackedSequence]


def _leaf(x: Input) -> Tensor:
    """The tensor gradients are taken for: the input itself, or the data of a packed input."""
    return x.data if isinstance(x, PackedSequence) else x


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
        self.lengths: Optional[Tensor] = draw_lengths(T, B) if cfg.packed else None
        self.inputs: List[Input] = []
        for _ in range(pool):
            x = torch.randn(T, B, cfg.input_size, generator=g, device=device, dtype=dtype)
            if self.lengths is not None:
                p = pack_padded_sequence(x, self.lengths, enforce_sorted=False)
                self.inputs.append(PackedSequence(p.data.requires_grad_(), p.batch_sizes, p.sorted_indices,
                                                  p.unsorted_indices))
            else:
                self.inputs.append(x.requires_grad_())
        out_shape = ((int(self.lengths.sum()),) if self.lengths is not None else (T, B)) + (out_features,)
        self.upstream = [torch.randn(out_shape, generator=g, device=device, dtype=dtype) for _ in range(pool)]
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
        grads = torch.autograd.grad(tensors[0], [_leaf(x)] + list(module.parameters()),
                                    self.upstream[index % len(self.upstream)])
        return [t.detach() for t in tensors] + list(grads)

    def step(self, module: nn.Module, mode: str) -> Callable[[int], None]:
        """``fn(i)`` for the timers: repetition i uses input/upstream pair i mod pool."""

        def fn(i: int) -> None:
            self.call(module, mode, i)

        return fn

    def tensor_names(self, mode: str) -> List[str]:
        names = ["output", "h_n"] + (["c_n"] if self.cfg.kind.has_cell_state else [])
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
            x0 = self.inputs[0]
            leaf = _leaf(x0).detach().to(torch.float64).requires_grad_()
            x = x0._replace(data=leaf) if isinstance(x0, PackedSequence) else leaf
            out = forward_tensors(ref(x))
            grads = torch.autograd.grad(out[0], [leaf] + list(ref.parameters()),
                                        self.upstream[0].to(torch.float64))
            self._truth = [t.detach() for t in out] + list(grads)
            del ref
        n_forward = 2 + self.cfg.kind.has_cell_state   # output, h_n (, c_n)
        return self._truth if mode == "fwdbwd" else self._truth[:n_forward]

    def release(self) -> None:
        """Drops the tensors of this shape (the next shape allocates its own)."""
        self._truth = None
        self.inputs.clear()
        self.upstream.clear()
