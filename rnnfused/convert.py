"""Swap the recurrent layers of an existing model for their fused twins (and back), in place.

    model = rnnfused.convert(model, backend="cpu")   # every nn.LSTM/GRU/RNN/*Cell inside runs on the fused ops
    model = rnnfused.revert(model)                   # and back to plain torch.nn

Each layer is converted by changing the class of the module object itself (``nn.LSTM`` -> ``FusedLSTM``, as
``torch.nn.utils.parametrize`` changes classes): the twins derive from the same ``nn.RNNBase`` /
``nn.RNNCellBase`` and hold the same attributes and parameters, so nothing has to be copied or re-registered.
Because the object stays the same, everything attached to it is kept — see :func:`convert`.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple, Type

from torch import nn
from torch.nn.utils import parametrize

from .backends import BACKENDS
from . import modules
from ._cells import CELL_KINDS

__all__ = ["convert", "revert", "FUSED_TWIN"]

# nn.* class -> its fused twin, from the cell registry (the twins are not subclasses of these: TorchDynamo refuses to
# trace nn.LSTM/GRU/RNN instances, see rnnfused/modules.py).
FUSED_TWIN: Dict[Type[nn.Module], Type[nn.Module]] = {
    torch_cls: getattr(modules, fused_name)
    for kind in CELL_KINDS.values()
    for torch_cls, fused_name in ((kind.torch_module, kind.module), (kind.torch_cell, kind.cell_module))
}
_TORCH_TWIN = {fused: torch_cls for torch_cls, fused in FUSED_TWIN.items()}

# Set on a converted module whose class was a subclass of an nn.* layer, so that revert() restores that class.
_ORIGINAL_CLASS = "_rnnfused_original_class"


def _torch_base(cls: type) -> Optional[Type[nn.Module]]:
    """The nn.* layer class that ``cls`` is or derives from (None if it is not one of them)."""
    for base in cls.__mro__:
        if base in FUSED_TWIN:
            return base
    return None


def _check_backend(backend: Optional[str]) -> None:
    if backend is None:
        return
    if not isinstance(backend, str) or backend.lower() not in BACKENDS + ("auto",):
        raise ValueError(f"rnnfused.convert: backend must be None, 'auto' or one of {BACKENDS}, got {backend!r}")


def _why_not(module: nn.Module, base: Type[nn.Module]) -> Optional[str]:
    """Why a module of a subclass of ``base`` must not be converted (None when it may)."""
    cls = type(module)
    if parametrize.is_parametrized(module):
        return "its parameters are parametrized (torch.nn.utils.parametrize)"
    if cls is not base and cls.forward is not base.forward:
        return f"{cls.__qualname__} subclasses nn.{base.__name__} and overrides forward"
    return None


def convert(module: nn.Module, *, backend: Optional[str] = None) -> nn.Module:
    """Replace every ``nn.LSTM/GRU/RNN`` and ``nn.LSTMCell/GRUCell/RNNCell`` inside ``module`` by its fused twin.

    The model is changed in place, the way Liger-Kernel's ``apply_liger_kernel_to_*`` patches a model: each
    recurrent layer becomes a :class:`~rnnfused.FusedLSTM`, :class:`~rnnfused.FusedGRU`, ... . The layer object is
    the same object afterwards (its class changes), so everything attached to it is kept as it is:

    * the parameters themselves (the same ``nn.Parameter`` objects: weights, device, dtype, ``requires_grad``,
      ``.grad``, tied or shared weights) — an optimizer created before ``convert`` keeps updating them;
    * the training/eval mode, hooks (forward, pre-forward, backward, state-dict), and any attribute set on it;
    * its place in the model: a layer referenced twice (shared) is converted once and stays shared, and
      references held elsewhere (``lstm = model.encoder``) see the converted layer;
    * ``state_dict`` keys and values (the twins use ``nn.*``'s parameter names).

    Layers that are left alone, with one ``UserWarning`` naming them: subclasses of an ``nn.*`` layer that
    override ``forward`` (their computation is not ``nn.*``'s), and layers whose parameters are parametrized
    (``torch.nn.utils.parametrize``). A subclass that does not override ``forward`` is converted; its own
    methods are unavailable until :func:`revert`, which restores its class. Layers that already are fused get
    ``backend`` set. Convert before ``torch.compile`` (a compiled model has traced the old classes).

    Args:
        module: a model, or a single recurrent layer.
        backend: the ``backend=`` of every fused layer (``None``: the selection rule — ``RNNFUSED_BACKEND``,
            else the fastest backend for the tensors' device and dtype; or one of ``rnnfused.backends.BACKENDS``).

    Returns:
        ``module`` (converted in place). When ``module`` itself is an ``nn.LSTM`` etc., that same object, now a
        ``FusedLSTM``.

    Raises:
        ValueError: ``backend`` is not a backend name.
        TypeError: ``module`` is not an ``nn.Module``.

    Example:
        >>> import torch, rnnfused
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.LSTM(8, 16, batch_first=True))
        >>> model = rnnfused.convert(model, backend="cpu")
        >>> type(model[1]).__name__
        'FusedLSTM'
        >>> type(rnnfused.revert(model)[1]).__name__
        'LSTM'
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"rnnfused.convert expects an nn.Module, got {type(module).__name__}")
    _check_backend(backend)
    skipped: List[Tuple[str, str]] = []
    for name, m in module.named_modules():  # each module once, shared ones included
        if type(m) in _TORCH_TWIN:
            m.backend = backend
            continue
        base = _torch_base(type(m))
        if base is None:
            continue
        reason = _why_not(m, base)
        if reason is not None:
            skipped.append((name or "<root>", reason))
            continue
        if type(m) is not base:
            setattr(m, _ORIGINAL_CLASS, type(m))
        m.__class__ = FUSED_TWIN[base]
        m.backend = backend
        if isinstance(m, modules._FusedRNNBase):
            m.__dict__.update(modules._FusedRNNBase.FUSED_ONLY_DEFAULTS)
    if skipped:
        listed = "; ".join(f"{name} ({reason})" for name, reason in skipped)
        warnings.warn(f"rnnfused.convert left {len(skipped)} recurrent layer(s) as they are: {listed}. "
                      "Replace them by hand if their computation is nn.*'s (e.g. FusedLSTM.from_module).",
                      UserWarning, stacklevel=2)
    return module


def revert(module: nn.Module) -> nn.Module:
    """Undo :func:`convert`: every fused layer inside ``module`` becomes its ``nn.*`` twin again, in place.

    The same objects and parameters are kept (as in :func:`convert`); the ``backend`` attribute is removed; a
    layer that was a subclass of an ``nn.*`` layer before :func:`convert` gets that class back. Fused layers
    that were built directly (``FusedLSTM(...)``) become plain ``nn.LSTM`` etc.

    Args:
        module: a model, or a single fused layer.

    Returns:
        ``module`` (reverted in place); when it is a fused layer itself, that same object, now an ``nn.*`` layer.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Example:
        >>> import torch, rnnfused
        >>> gru = rnnfused.revert(rnnfused.FusedGRU(4, 8))
        >>> isinstance(gru, torch.nn.GRU)
        True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"rnnfused.revert expects an nn.Module, got {type(module).__name__}")
    for m in module.modules():
        torch_cls = _TORCH_TWIN.get(type(m))
        if torch_cls is None:
            continue
        m.__dict__.pop("backend", None)
        options = {k: m.__dict__.pop(k, 0.0) for k in getattr(m, "FUSED_ONLY_DEFAULTS", ())}
        dropped = [f"{k}={v}" for k, v in options.items() if v]
        if dropped:
            warnings.warn(f"rnnfused.revert: {type(m).__name__} loses {', '.join(dropped)} (nn.* has no such "
                          "option)", UserWarning, stacklevel=2)
        m.__class__ = m.__dict__.pop(_ORIGINAL_CLASS, torch_cls)
    return module
