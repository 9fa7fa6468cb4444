"""Host side of the BPTT recurrence: gradient buffers, the per-step launch loop and the persistent launch.

Only the sequential part runs here: dgates for every step, and the state gradients that reach step 0. The big
GEMMs (dX, dW_ih, dW_hh, dW_hr, bias sums, the last dgates W_hh) are torch ops in ops.py.
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
from .persistent_kernels import backward_persistent_kernel
from .step_kernels import backward_step_kernel


class BackwardResult(NamedTuple):
    dgx: Tensor            # [T, B, G·H]  dL/d(input-projection pre-activations)
    dgh: Tensor            # [T, B, G·H]  dL/d(recurrent pre-activations) (GRU); [0] when equal to dgx
    grad_h_last: Tensor    # [B, K]       dL/dh_0 except dgates_0 W_hh
    grad_c0: Tensor        # [B, H]       cell dtype (LSTM); [0] otherwise
    dh_seq: Tensor         # [T, B, K]    dL/dh_t (projection only, for dW_hr); [0] otherwise


def backward_recurrence(kind: CellKind, choice: PathChoice, grad_output: Tensor, grad_h_n: Tensor,
                        grad_c_n: Optional[Tensor], c0: Optional[Tensor], w_hh: Tensor, w_hr: Optional[Tensor],
                        lengths: Optional[Tensor], reverse: bool, output: Tensor, saved: Tensor, cells: Tensor,
                        h_prev_seq: Tensor, starts: Optional[Tensor] = None, zoneout: Optional[Tensor] = None,
                        cfg: Optional[KernelConfig] = None) -> BackwardResult:
    """grad_output/output/h_prev_seq [T, B, K]; grad_h_n [B, K]; grad_c_n, c0 [B, H]; saved [T, B, S·H];
    cells [T, B, H] (cell dtype); lengths [B] int64 on the tensors' device; starts [T, B] bool (layer.reset_starts)
    or None (h_prev_seq then has h0 at those steps: layer.previous_states); zoneout [S, T, B, H] contiguous
    keep-masks in the cell dtype (never with w_hr) or None (cells then hold the zoned-out c_t)."""
    with device_guard(output.device):
        return _backward_recurrence(kind, choice, grad_output, grad_h_n, grad_c_n, c0, w_hh, w_hr, lengths, reverse,
                                    output, saved, cells, h_prev_seq, starts, zoneout, cfg)


def _backward_recurrence(kind, choice, grad_output, grad_h_n, grad_c_n, c0, w_hh, w_hr, lengths, reverse, output,
                         saved, cells, h_prev_seq, starts, zoneout, cfg) -> BackwardResult:
    T, B, K = output.shape
    GH = w_hh.shape[0]
    H = GH // kind.gates
    proj = w_hr is not None
    assert not (proj and zoneout is not None), "zoneout is never combined with a projection (_validation.py)"
    lstm = kind.has_cell_state
    split = kind.split_recurrent_grad
    if cfg is None:
        cfg = lookup_config("backward", choice, kind, output, B, H, K,
                            lambda c: _time_probe(kind, choice, c, B, H, K, output.dtype, output.device, proj))
    cdt = cell_state_dtype(output.dtype)
    dgx = output.new_empty(T, B, GH)                         # [T, B, G·H]
    dgh = output.new_empty(T, B, GH) if split else dgx       # [T, B, G·H]
    carry_buf = output.new_empty(2, B, K)                    # [2, B, K]
    grad_h_last = output.new_empty(B, K)                     # [B, K]
    dc_buf = output.new_empty(2 if lstm else 0, B, H, dtype=cdt)  # [2, B, H]
    grad_c0 = output.new_empty(B if lstm else 0, H, dtype=cdt)    # [B, H]
    gcn = grad_c_n.to(cdt).contiguous() if lstm else None        # [B, H]
    c0c = c0.to(cdt).contiguous() if lstm else None              # [B, H]
    dr = output.new_empty(B, H) if proj else None                # [B, H]
    dh_seq = output.new_empty(T, B, K) if proj else output.new_empty(0)  # [T, B, K]
    resets = starts is not None
    # The gradients that reach h0/c0 at segment starts (resets.move_to_initial), added to grad_h_last/grad_c0 at the
    # end; in the cell dtype so that many segments do not sum in 16 bits.
    h0_acc = output.new_zeros(B, K, dtype=cdt) if resets else None            # [B, K]
    c0_acc = output.new_zeros(B, H, dtype=cdt) if resets and lstm else None   # [B, H]
    ph = dgx  # placeholder for pointer arguments a cell does not use (never dereferenced)
    ptrs = (dgx, dgh, w_hh, grad_h_n, carry_buf, grad_h_last, grad_output, dr if proj else ph,
            gcn if lstm else ph, dc_buf if lstm else ph, grad_c0 if lstm else ph,
            saved if kind.saved_per_unit else ph, c0c if lstm else ph, cells if lstm else ph, h_prev_seq, output,
            ph if lengths is None else lengths, starts if resets else ph, h0_acc if resets else ph,
            c0_acc if c0_acc is not None else ph, ph if zoneout is None else zoneout)
    meta = cell_meta(kind, cfg, output.dtype, reverse, lengths is not None, resets, zoneout is not None)
    meta.update(FROM_DR=proj, SPLIT=split)
    tiles = num_tiles(B, H, cfg.block_b, cfg.block_h)
    if choice.path == "persistent":
        assert not proj, "the persistent path has no projection (dispatch.choose_path)"
        programs = choice.num_programs(tiles, output.device, interpreted())
        launch_persistent(backward_persistent_kernel, programs, T, ptrs, B, H, K, meta, output.device)
    else:
        for s in range(T - 1, -1, -1):
            t = T - 1 - s if reverse else s
            active = None if lengths is None else (lengths > t).unsqueeze(1)  # [B, 1]
            if proj:
                _projected_dr(s, t, T, reverse, grad_output, grad_h_n, carry_buf, dgh, w_hh, w_hr, dh_seq, dr,
                              active, starts, h0_acc)
            backward_step_kernel[(tiles,)](s, T, *ptrs, B, H, K, **meta)
            if proj:
                # With a projection no part of dL/dh_{t-1} skips W_hh, except on padded rows (pass-through).
                carry_dst = grad_h_last if s == 0 else carry_buf[s % 2]
                if active is None:
                    carry_dst.zero_()
                else:
                    torch.where(active, torch.zeros_like(dh_seq[t]), dh_seq[t], out=carry_dst)
    if resets:
        grad_h_last.add_(h0_acc)
        if lstm:
            grad_c0.add_(c0_acc)
    return BackwardResult(dgx, dgh if split else output.new_empty(0), grad_h_last, grad_c0, dh_seq)


def _projected_dr(s: int, t: int, T: int, reverse: bool, grad_output: Tensor, grad_h_n: Tensor, carry_buf: Tensor,
                  dgh: Tensor, w_hh: Tensor, w_hr: Tensor, dh_seq: Tensor, dr: Tensor, active: Optional[Tensor],
                  starts: Optional[Tensor], h0_acc: Optional[Tensor]) -> None:
    """dh_t = carry + dgates_{t+1} W_hh + grad_output[t] (0 on padded rows) → dh_seq[t];  dr = dh_t W_hr. With
    resets, the first two terms (the gradient of the state entering step t+1) go to h0_acc where step t+1 started
    from h0 (the kernels' resets.move_to_initial)."""
    dh_t = dh_seq[t]                                              # [B, K]
    go = grad_output[t] if active is None else torch.where(active, grad_output[t], 0)
    if s == T - 1:
        torch.add(grad_h_n, go, out=dh_t)
    else:
        t_next = t - 1 if reverse else t + 1
        torch.addmm(carry_buf[(s + 1) % 2], dgh[t_next], w_hh, out=dh_t)  # dL/d(state entering step t_next)
        if starts is not None:
            fresh = starts[t_next].unsqueeze(1)                   # [B, 1]
            h0_acc.add_(torch.where(fresh, dh_t, 0))
            dh_t.masked_fill_(fresh, 0)
        dh_t.add_(go)
    torch.mm(dh_t, w_hr, out=dr)


def _time_probe(kind: CellKind, choice: PathChoice, cfg: KernelConfig, B: int, H: int, K: int, dtype: torch.dtype,
                device: torch.device, proj: bool, T: int = 8) -> float:
    """Milliseconds of a T-step backward with config cfg on scratch inputs (autotuning, GPU only)."""
    g = torch.Generator(device=device).manual_seed(0)
    rnd = lambda *shape, dt=dtype: (torch.rand(*shape, generator=g, device=device) - 0.5).to(dt)  # noqa: E731
    GH = kind.gates * H
    lstm = kind.has_cell_state
    cdt = cell_state_dtype(dtype)
    seq = rnd(T, B, K)
    args = dict(grad_output=rnd(T, B, K), grad_h_n=rnd(B, K), grad_c_n=rnd(B, H) if lstm else None,
                c0=rnd(B, H) if lstm else None, w_hh=rnd(GH, K) / K ** 0.5, w_hr=rnd(K, H) if proj else None,
                lengths=None, reverse=False, output=seq, saved=rnd(T, B, kind.saved_per_unit * H),
                cells=rnd(T if lstm else 0, B, H, dt=cdt), h_prev_seq=seq)
    return cuda_time_ms(lambda: backward_recurrence(kind, choice, cfg=cfg, **args))
