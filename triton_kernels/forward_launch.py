"""Host side of the forward recurrence: output buffers, the per-step launch loop and the persistent launch.

Both run inside an opaque custom op (recurrence_ops.py), so torch.compile sees ONE graph node whatever T is and
never unrolls the per-step loop; everything here runs on the tensors' device (launch_common.device_guard).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from rnnfused._cells import CellKind, cell_state_dtype

from .configs import KernelConfig
from .dispatch import PathChoice, num_tiles
from .launch_common import (cell_meta, cuda_time_ms, device_guard, interpreted, launch_persistent,
                            lookup_config)
from .persistent_kernels import forward_persistent_kernel
from .step_kernels import forward_step_kernel


class ForwardResult(NamedTuple):
    output: Tensor  # [T, B, K]    zero on padded steps
    h_n: Tensor     # [B, K]
    cells: Tensor   # [T, B, H]    c_t in the cell dtype (LSTM; [0, B, H] otherwise)
    saved: Tensor   # [T, B, S·H]  activations for backward


def forward_recurrence(kind: CellKind, choice: PathChoice, xg: Tensor, h0: Tensor, c0: Optional[Tensor],
                       w_hh: Tensor, b_hh: Optional[Tensor], w_hr: Optional[Tensor], lengths: Optional[Tensor],
                       reverse: bool, starts: Optional[Tensor] = None, zoneout: Optional[Tensor] = None,
                       cfg: Optional[KernelConfig] = None) -> ForwardResult:
    """xg: [T, B, G·H] = x W_ihᵀ + b_ih; h0 [B, K]; c0 [B, H]; w_hh [G·H, K]; lengths [B] int64 on xg's device;
    starts [T, B] bool on xg's device (layer.reset_starts: the steps that start from h0/c0), or None; zoneout
    [S, T, B, H] contiguous keep-masks in the cell dtype (never with w_hr), or None."""
    with device_guard(xg.device):
        return _forward_recurrence(kind, choice, xg, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, starts, zoneout,
                                   cfg)


def _forward_recurrence(kind, choice, xg, h0, c0, w_hh, b_hh, w_hr, lengths, reverse, starts, zoneout,
                        cfg) -> ForwardResult:
    T, B, GH = xg.shape
    H, K = GH // kind.gates, w_hh.shape[1]
    proj = w_hr is not None
    assert not (proj and zoneout is not None), "zoneout is never combined with a projection (_validation.py)"
    if cfg is None:
        cfg = lookup_config("forward", choice, kind, xg, B, H, K,
                            lambda c: _time_probe(kind, choice, c, B, H, K, xg.dtype, xg.device, proj))
    lstm = kind.has_cell_state
    output = xg.new_empty(T, B, K)                                              # [T, B, K]
    h_n = xg.new_empty(B, K)                                                    # [B, K]
    h_buf = xg.new_empty(2, B, K)                                               # [2, B, K] ping-pong state
    cells = xg.new_empty(T if lstm else 0, B, H, dtype=cell_state_dtype(xg.dtype))    # [T, B, H]
    saved = xg.new_empty(T, B, kind.saved_per_unit * H)                         # [T, B, S·H]
    cell_out = xg.new_empty(T, B, H) if proj else output                        # [T, B, H] r_t before W_hr
    c0c = c0.to(cell_state_dtype(xg.dtype)).contiguous() if lstm else None            # [B, H]
    # Unused pointer arguments get a placeholder tensor (never dereferenced: the flags compile their uses away).
    ptrs = (xg, xg if b_hh is None else b_hh, w_hh, h0, h_buf, h_n, c0c if lstm else xg, cells if lstm else xg,
            cell_out, saved if kind.saved_per_unit else xg, xg if lengths is None else lengths,
            xg if starts is None else starts, xg if zoneout is None else zoneout)
    meta = cell_meta(kind, cfg, xg.dtype, reverse, lengths is not None, starts is not None, zoneout is not None)
    meta.update(HAS_BIAS=b_hh is not None, WRITE_STATE=not proj)
    tiles = num_tiles(B, H, cfg.block_b, cfg.block_h)
    if choice.path == "persistent":
        assert not proj, "the persistent path has no projection (dispatch.choose_path)"
        programs = choice.num_programs(tiles, xg.device, interpreted())
        launch_persistent(forward_persistent_kernel, programs, T, ptrs, B, H, K, meta, xg.device)
    else:
        for s in range(T):
            forward_step_kernel[(tiles,)](s, T, *ptrs, B, H, K, **meta)
            if proj:
                _project(s, T, reverse, cell_out, output, w_hr, h0, h_buf, h_n, lengths)
    return ForwardResult(output, h_n, cells, saved)


def _project(s: int, T: int, reverse: bool, cell_out: Tensor, output: Tensor, w_hr: Tensor, h0: Tensor,
             h_buf: Tensor, h_n: Tensor, lengths: Optional[Tensor]) -> None:
    """h_t = r_t W_hrᵀ on active rows (r_t is 0 on padded rows, so output[t] is 0 there); the state buffers as
    steps.forward_step reads them."""
    t = T - 1 - s if reverse else s
    out_t = output[t]                                      # [B, K]
    torch.mm(cell_out[t], w_hr.t(), out=out_t)
    h_src = h0 if s == 0 else h_buf[(s - 1) % 2]
    h_dst = h_n if s == T - 1 else h_buf[s % 2]
    if lengths is None:
        h_dst.copy_(out_t)
    else:
        torch.where((lengths > t).unsqueeze(1), out_t, h_src, out=h_dst)


def _time_probe(kind: CellKind, choice: PathChoice, cfg: KernelConfig, B: int, H: int, K: int, dtype: torch.dtype,
                device: torch.device, proj: bool, T: int = 8) -> float:
    """Milliseconds of a T-step forward with config cfg on scratch inputs (autotuning, GPU only)."""
    g = torch.Generator(device=device).manual_seed(0)
    rnd = lambda *shape: (torch.rand(*shape, generator=g, device=device) - 0.5).to(dtype)  # noqa: E731
    GH = kind.gates * H
    xg, h0, w_hh, b_hh = rnd(T, B, GH), rnd(B, K), rnd(GH, K) / K ** 0.5, rnd(GH)
    c0 = rnd(B, H) if kind.has_cell_state else None
    w_hr = rnd(K, H) if proj else None
    return cuda_time_ms(lambda: forward_recurrence(kind, choice, xg, h0, c0, w_hh, b_hh, w_hr, None, False,
                                                   cfg=cfg))
