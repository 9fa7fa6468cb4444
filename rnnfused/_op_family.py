"""Op families: every backend's ops ``rnnfused::{cell}{suffix}`` and ``rnnfused::{cell}_backward{suffix}`` (the C++ ops
with suffix "", the Triton ops with "_triton") have the schemas of csrc/sequence/op_schemas.h, so one registration
gives any family its fakes, autograd and autocast. Importing this module registers the C++ family when rnnfused._C
is loaded."""
from __future__ import annotations

import torch

from ._autocast import register_autocast
from ._autograd import register_autograd
from ._cells import CELL_KINDS, CellKind
from ._extension import extension_loaded
from ._fakes import backward_fake, forward_fake

__all__ = ["register_family", "op_for"]


def op_for(kind: CellKind, suffix: str = "") -> torch._ops.OpOverload:
    """The forward op of ``kind`` in the family ``suffix``."""
    return getattr(torch.ops.rnnfused, f"{kind.name}{suffix}").default


def register_family(suffix: str = "") -> None:
    """Registers fake functions, autograd and autocast for the ops ``rnnfused::{kind}{suffix}`` and their backward ops,
    for every cell kind of the registry."""
    for kind in CELL_KINDS.values():
        fwd_name, bwd_name = f"{kind.name}{suffix}", f"{kind.name}_backward{suffix}"
        torch.library.register_fake(f"rnnfused::{fwd_name}")(forward_fake(kind))
        torch.library.register_fake(f"rnnfused::{bwd_name}")(backward_fake(kind))
        forward_op = getattr(torch.ops.rnnfused, fwd_name).default
        register_autograd(kind, forward_op, getattr(torch.ops.rnnfused, bwd_name).default)
        register_autocast(forward_op, fwd_name)


if extension_loaded():
    register_family("")
