"""Autocast for the forward ops: under ``torch.autocast(device, dtype)`` an op runs in the autocast dtype chosen at call
time, as nn.LSTM does (``torch.library.register_autocast`` would fix one dtype at registration)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["register_autocast"]

_LIB = torch.library.Library("rnnfused", "IMPL")


def _autocast_arg(arg, dtype: torch.dtype):
    # As autocast's lower-precision policy: floating tensors other than float64 take the autocast dtype.
    if isinstance(arg, Tensor) and arg.is_floating_point() and arg.dtype not in (torch.float64, dtype):
        return arg.to(dtype)
    return arg


def register_autocast(op: torch._ops.OpOverload, name: str) -> None:
    """Registers the AutocastCPU and AutocastCUDA kernels of ``rnnfused::{name}``."""
    for device_type in ("cpu", "cuda"):
        key = "AutocastCPU" if device_type == "cpu" else "AutocastCUDA"
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _keyset_excluded=keyset):
            dtype = torch.get_autocast_dtype(_device_type)
            with torch._C._ExcludeDispatchKeyGuard(_keyset_excluded):
                return op(*[_autocast_arg(a, dtype) for a in args])

        _LIB.impl(name, kernel, key, with_keyset=True)
