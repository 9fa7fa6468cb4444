"""Sequence lengths on the input's device, moved once per module call and without a blocking copy.

The ops take ``lengths`` on the CPU (checked and copied by the op, a pageable copy that blocks the host) or already on
the input's device (used as they are). The modules and the functional API check the values on the CPU, then hand every
layer-direction the same device copy, made here with one non-blocking copy from pinned memory. The device copies of
recent lengths are kept, so a call under CUDA-graph capture (where no host-to-device copy of a new value can be made)
finds those of its warm-up run; copies used during a capture are kept for good, since the graph reads their memory at
every replay.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["lengths_on_device"]

_RECENT: "OrderedDict[Tuple, Tensor]" = OrderedDict()  # (device, lengths) -> device copy, most recent last
_MAX_RECENT = 64
_CAPTURED: Dict[Tuple, Tensor] = {}  # copies that a captured CUDA graph reads: never freed


def _copy(lengths: Tensor, device: torch.device) -> Tensor:
    return lengths.pin_memory().to(device, non_blocking=True)


def lengths_on_device(lengths: Optional[Tensor], device: torch.device) -> Optional[Tensor]:
    """``lengths`` (int64 [B] on the CPU, values already checked) on ``device``."""
    if lengths is None or device.type != "cuda" or lengths.device == device:
        return lengths
    if torch.compiler.is_compiling():
        return lengths.to(device, non_blocking=True)
    key = (device, tuple(lengths.tolist()))
    capturing = torch.cuda.is_current_stream_capturing()
    found = _CAPTURED.get(key)
    if found is None:
        found = _RECENT.get(key)
        if found is not None:
            _RECENT.move_to_end(key)
    if found is None:
        if capturing:
            raise RuntimeError("rnnfused: these sequence lengths were not seen before the CUDA-graph capture; run the "
                               "module once with them before capturing (the usual warm-up), so they are on the device")
        found = _copy(lengths, device)
        _RECENT[key] = found
        while len(_RECENT) > _MAX_RECENT:
            _RECENT.popitem(last=False)
    if capturing:
        _CAPTURED[key] = found
    return found
