"""Argument checks of the LayerNorm recurrence ops (rnnfused/_layer_norm_ops.py): shapes, dtypes and devices of
everything but ``lengths`` (_validation.check_op_lengths) and the backward's tensors from the forward
(_validation.check_saved). ValueError naming the argument and what was expected; the ops raise it as RuntimeError
with their name."""
from __future__ import annotations

from torch import Tensor

from ._cells import CellKind
from ._layer_norm_ops import LayerNormInputs
from ._validation import check_resets, check_tensor, check_zoneout

__all__ = ["check_layer_norm_inputs"]


def check_layer_norm_inputs(kind: CellKind, x: LayerNormInputs, like: Tensor, steps: int, batch: int) -> None:
    """``x``'s tensors for a [steps, batch] sequence; dtype and device those of ``like`` (forward: xg, checked
    here; backward, where x.xg is None: the output). w_hh [G·H, H] sets H."""
    if x.xg is not None:
        if not isinstance(x.xg, Tensor) or x.xg.dim() != 3 or not x.xg.dtype.is_floating_point:
            got = f"{x.xg.dtype} {list(x.xg.shape)}" if isinstance(x.xg, Tensor) else type(x.xg).__name__
            raise ValueError(f"xg must be a 3-D floating tensor [seq_len, batch, {kind.gates}*hidden_size], got {got}")
    if steps == 0 or batch == 0:
        raise ValueError(f"seq_len and batch must be > 0, got [{steps}, {batch}]")
    G = kind.gates
    w_hh = x.w_hh
    if not isinstance(w_hh, Tensor) or w_hh.dim() != 2 or w_hh.shape[0] != G * w_hh.shape[1] or w_hh.shape[1] == 0:
        shape = list(w_hh.shape) if isinstance(w_hh, Tensor) else type(w_hh).__name__
        raise ValueError(f"w_hh must be 2-D [{G}*hidden_size, hidden_size], got {shape}")
    H = w_hh.shape[1]
    check_tensor("w_hh", w_hh, (G * H, H), like)
    if x.xg is not None:
        check_tensor("xg", x.xg, (steps, batch, G * H), like)
    check_tensor("h0", x.h0, (batch, H), like)
    check_tensor("b_hh", x.b_hh, (G * H,), like)
    check_tensor("ln_hh_weight", x.ln_hh_weight, (G * H,), like)
    names = ("h0", "ln_hh_weight") + (("c0", "ln_c_weight", "ln_c_bias") if kind.has_cell_state else ())
    for name in names:
        if getattr(x, name) is None:
            raise ValueError(f"{name} is required by the layer-norm {kind.name} op, got None")
    if kind.has_cell_state:
        check_tensor("c0", x.c0, (batch, H), like)
        check_tensor("ln_c_weight", x.ln_c_weight, (H,), like)
        check_tensor("ln_c_bias", x.ln_c_bias, (H,), like)
    check_resets(x.resets, steps, batch, like.device, x.lengths is not None)
    check_zoneout(kind, x.zoneout, (steps, batch, H), like, projection=False)
