"""What a backend is: the interface every implementation of the layer ops provides (a leaf module: the backends
themselves, built in rnnfused/backends.py or loaded lazily like rnnfused/_triton_backend.py, import it)."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from . import _layer_norm_ops as ln
from ._cells import CellKind
from ._inputs import LayerInputs, forward_args
from ._op_family import op_for

__all__ = ["LayerBackend", "CustomOpBackend"]


class LayerBackend:
    """One implementation of the layer ops.

    ``run(kind, x)`` takes :class:`rnnfused._inputs.LayerInputs` and returns ``(output, h_n, c_n)`` (``c_n`` is None
    for cells without a cell state). ``unavailable(device, dtype)`` returns None when the backend can run such
    tensors here, else a sentence saying why not.

    Args (of ``run``):
        kind: the cell (:class:`rnnfused._cells.CellKind`).
        x: one validated, time-major layer-direction: input ``[T, B, I]``, h0 ``[B, H_out]``, c0 ``[B, H]`` (LSTM),
            weights and biases as in ``nn.*``, lengths ``[B]`` or None, reverse.

    Returns (of ``run``):
        ``output [T, B, H_out]``, ``h_n [B, H_out]``, ``c_n [B, H]`` or None.

    Example::

        class MyBackend(LayerBackend):
            name = "triton"                      # replaces the built-in one once registered
            def unavailable(self, device, dtype): return None if device.type == "cuda" else "CUDA tensors only"
            def run(self, kind, x): ...
        rnnfused.backends.register_backend(MyBackend())
    """

    name: str = ""

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> Optional[str]:
        raise NotImplementedError

    def run(self, kind: CellKind, x: LayerInputs) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        raise NotImplementedError

    def run_layer_norm(self, kind: CellKind, x) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """The recurrence of ``kind``'s LayerNorm variant from its gate inputs (``x``: a
        :class:`rnnfused._layer_norm_ops.LayerNormInputs`) -> ``(output, h_n, c_n or None)``."""
        raise NotImplementedError(f"the {self.name} backend has no LayerNorm cells")


class CustomOpBackend(LayerBackend):
    """A backend made of the ``rnnfused::{kind}{suffix}`` custom ops (fakes and autograd from rnnfused/_op_family.py)."""

    def __init__(self, name: str, suffix: str, availability: Callable[[torch.device, torch.dtype], Optional[str]]):
        self.name = name
        self.suffix = suffix
        self._availability = availability

    def unavailable(self, device, dtype):
        return self._availability(device, dtype)

    def run(self, kind, x):
        # Keep what backward needs only when there will be a backward (as nn.LSTM's _cudnn_rnn does with `train`).
        train = _will_train(x)
        outs = _call(op_for(kind, self.suffix), forward_args(kind, x._replace(train=train)), train)
        return (outs[0], outs[1], outs[2] if kind.has_cell_state else None)

    def run_layer_norm(self, kind, x):
        train = _will_train(x)
        outs = _call(ln.layer_norm_op(kind, self.suffix), ln.forward_args(kind, x._replace(train=train)), train)
        return (outs[0], outs[1], outs[2] if kind.has_cell_state else None)


def _will_train(x) -> bool:
    """Whether autograd will record this call: grad mode is on and some input requires grad."""
    return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in x)


def _call(op: torch._ops.OpOverload, args: tuple, train: bool):
    """op(*args). When autograd will not record the call, it goes straight to the kernel below the autograd layer:
    that layer is torch.library's Python wrapper (register_autograd), which would only redispatch the same way,
    and costs ~6 us a call (a quarter of a one-step LSTM call's op time on the dev CPU). Tracers and compilers
    get the plain call."""
    if train or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)
