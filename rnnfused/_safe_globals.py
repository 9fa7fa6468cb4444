"""Lets ``torch.load(path)`` — PyTorch's default ``weights_only=True`` — load whole saved models holding fused layers.

``torch.save(model)`` pickles a fused module as its class plus its ``__dict__``: parameters, ``OrderedDict``s,
``set``s, strings, numbers and ``None`` (``backend``), which ``torch.load`` allows by default; the weak references of
``nn.RNNBase`` (``_flat_weight_refs``) are dropped by its ``__getstate__`` and rebuilt by ``__setstate__``. So the
only globals a pickled fused module adds are the module classes of the cell registry (rnnfused/_cells.py: the
plain and the LayerNorm ones), and exactly
those are allowlisted (with ``torch.serialization.add_safe_globals``) when rnnfused is imported. Their
``__setstate__`` (``nn.RNNBase``'s, ``nn.Module``'s, which the fused classes extend only with a default ``backend``)
only sets attributes. A model's own classes still need allowlisting by the user, as usual.
"""
from __future__ import annotations

import torch

from . import layer_norm, modules
from ._cells import CELL_KINDS

__all__ = ["SAFE_GLOBALS", "register"]

# Every fused module and cell class of the registry, once (rnn_tanh and rnn_relu share theirs).
SAFE_GLOBALS = tuple(dict.fromkeys(
    [getattr(modules, name) for kind in CELL_KINDS.values() for name in (kind.module, kind.cell_module)]
    + [getattr(layer_norm, name) for kind in CELL_KINDS.values() if kind.layer_norm_step is not None
       for name in (kind.layer_norm_module, kind.layer_norm_cell_module)]))


def register() -> None:
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
