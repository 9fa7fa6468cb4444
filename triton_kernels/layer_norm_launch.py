"""Host side of the LayerNorm recurrence (layer_norm_kernels.py): buffers and the per-step loops, each step one
torch.mm (cuBLAS on the GPU) for the recurrent GEMM and one kernel launch for the rest of the step.

These run inside opaque custom ops (layer_norm_ops.py), so torch.compile sees one node for any T; everything runs
on the tensors' device (launch_common.device_guard).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import triton
from torch import Tensor

from rnnfused._cells import CELL_IDS, CellKind, cell_state_dtype
from rnnfused._layer_norm_ops import saved_width

from .launch_common import device_guard
from .layer_norm_kernels import layer_norm_backward_step_kernel, layer_norm_forward_step_kernel

_ROW_ELEMENTS = 4096  # a program's G·BLOCK_H·BLOCK_B: whole rows, several small ones per program


def block_sizes(kind: CellKind, B: int, H: int) -> dict:
    """BLOCK_H (all of H: LayerNorm reduces over whole rows) and BLOCK_B rows per program, with num_warps."""
    block_h = triton.next_power_of_2(H)
    row = kind.gates * block_h
    fits = max(1, _ROW_ELEMENTS // row)
    block_b = min(triton.next_power_of_2(B), 16, 1 << (fits.bit_length() - 1))  # powers of two (tl.arange)
    # 8 warps from 2048 elements on: a program keeps ~12 such tiles live (sm_90: no spills up to fp32, H=1024).
    return dict(BLOCK_B=block_b, BLOCK_H=block_h, num_warps=4 if row * block_b < 2048 else 8)


def _step_times(T: int, reverse: bool):
    """(t, t_next) in processing order; t_next = -1 after the last step."""
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    return list(zip(order, order[1:] + [-1]))


def _dummy(like: Tensor, dtype=None) -> Tensor:
    return like.new_empty(0, dtype=dtype)


class LayerNormForward(NamedTuple):
    output: Tensor  # [T, B, H]   zero on padded steps
    h_n: Tensor     # [B, H]
    c_n: Tensor     # [B, H]      (LSTM; [0] otherwise)
    saved: Tensor   # [T, B, W]   cell dtype ([0] when not train)
    cells: Tensor   # [T, B, H]   cell dtype (LSTM and train; [0] otherwise)


def forward_recurrence(kind: CellKind, xg: Tensor, h0: Tensor, c0: Optional[Tensor], w_hh: Tensor,
                       b_hh: Optional[Tensor], ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor],
                       ln_c_bias: Optional[Tensor], lengths: Optional[Tensor], starts: Optional[Tensor],
                       zoneout: Optional[Tensor], reverse: bool, train: bool) -> LayerNormForward:
    """Contiguous inputs on one device; lengths [B] int64 on that device; starts [T, B] bool (layer.reset_starts)."""
    with device_guard(xg.device):
        T, B, GH = xg.shape
        H = GH // kind.gates
        lstm = kind.has_cell_state
        cdt = cell_state_dtype(xg.dtype)
        output = xg.new_empty(T, B, H)
        h_run = h0.clone()                                           # [B, H] the state entering each step
        c_run = c0.to(cdt, copy=True) if lstm else _dummy(xg, cdt)   # [B, H]
        saved = xg.new_empty(T, B, saved_width(kind, H), dtype=cdt) if train else _dummy(xg, cdt)
        cells = xg.new_empty(T, B, H, dtype=cdt) if train and lstm else _dummy(xg, cdt)
        hw = xg.new_empty(B, GH)                                     # [B, G·H] h_{t-1} W_hhᵀ
        w_hh_t = w_hh.t()
        meta = block_sizes(kind, B, H)
        grid = (triton.cdiv(B, meta["BLOCK_B"]),)
        for t, t_next in _step_times(T, reverse):
            torch.mm(h_run, w_hh_t, out=hw)
            layer_norm_forward_step_kernel[grid](
                t, t_next, hw, xg, _opt(b_hh, xg), ln_hh_weight, _opt(ln_c_weight, xg), _opt(ln_c_bias, xg), h0,
                _opt(c0, xg), h_run, c_run, output, saved, cells, _opt(lengths, xg, torch.int64),
                _opt(starts, xg, torch.bool), _opt(zoneout, xg, cdt), T, B, H,
                CELL=CELL_IDS[kind.name], G=kind.gates, HAS_BIAS=b_hh is not None, HAS_LENGTHS=lengths is not None,
                HAS_RESETS=starts is not None, HAS_ZONEOUT=zoneout is not None, TRAIN=train, **meta)
        c_n = c_run.to(xg.dtype) if lstm else _dummy(xg)
        return LayerNormForward(output, h_run, c_n, saved, cells)


class LayerNormBackward(NamedTuple):
    grad_xg: Tensor    # [T, B, G·H]
    dhw: Tensor        # [T, B, G·H]  dL/d(h W_hhᵀ) per step (grad_w_hh = Σ_t dhw[t]ᵀ h_{t-1})
    grad_h0: Tensor    # [B, H]
    grad_c0: Tensor    # [B, H]       (LSTM; [0] otherwise)
    ln_hh_acc: Tensor  # [B, G·H]     per-row Σ_t of grad_ln_hh_weight (ACC dtype)
    b_hh_acc: Tensor   # [B, G·H]     per-row Σ_t of grad_b_hh (GRU; [0] otherwise)
    ln_c_acc: Tensor   # [2, B, H]    per-row Σ_t of grad_ln_c_weight, grad_ln_c_bias (LSTM; [0] otherwise)


def backward_recurrence(kind: CellKind, grad_output: Tensor, grad_h_n: Tensor, grad_c_n: Optional[Tensor],
                        w_hh: Tensor, ln_hh_weight: Tensor, ln_c_weight: Optional[Tensor],
                        ln_c_bias: Optional[Tensor], lengths: Optional[Tensor], starts: Optional[Tensor],
                        zoneout: Optional[Tensor], reverse: bool, saved: Tensor, c_prev_seq: Optional[Tensor],
                        h_prev_seq: Tensor) -> LayerNormBackward:
    """The reverse sweep. c_prev_seq / h_prev_seq [T, B, H]: the state each step started from (layer.previous_states;
    c in the cell dtype)."""
    with device_guard(grad_output.device):
        T, B, H = grad_output.shape
        GH = w_hh.shape[0]
        lstm = kind.has_cell_state
        acc = cell_state_dtype(grad_output.dtype)
        zeros = lambda *shape: grad_output.new_zeros(*shape, dtype=acc)  # noqa: E731
        grad_xg = grad_output.new_empty(T, B, GH)
        dhw = grad_output.new_empty(T, B, GH)
        dh_mm = grad_output.new_zeros(B, H)                    # [B, H] dhw[t_next] W_hh
        dh = grad_h_n.to(acc, copy=True)                       # [B, H] the direct part of the h carry
        dc = grad_c_n.to(acc, copy=True) if lstm else _dummy(grad_output, acc)
        h0_acc = zeros(B, H) if starts is not None else _dummy(grad_output, acc)
        c0_acc = zeros(B, H) if starts is not None and lstm else _dummy(grad_output, acc)
        ln_hh_acc = zeros(B, GH)
        b_hh_acc = zeros(B, GH) if kind.split_recurrent_grad else _dummy(grad_output, acc)
        ln_c_acc = zeros(2, B, H) if lstm else _dummy(grad_output, acc)
        meta = block_sizes(kind, B, H)
        grid = (triton.cdiv(B, meta["BLOCK_B"]),)
        # The forward's steps last to first: t_next (the step after t in the forward) was just done.
        for t, t_next in reversed(_step_times(T, reverse)):
            layer_norm_backward_step_kernel[grid](
                t, t_next, grad_output, dh_mm, dh, dc, h0_acc, c0_acc, saved, _opt(c_prev_seq, grad_output, acc),
                h_prev_seq, ln_hh_weight, _opt(ln_c_weight, grad_output), _opt(ln_c_bias, grad_output), grad_xg,
                dhw, ln_hh_acc, b_hh_acc, ln_c_acc, _opt(lengths, grad_output, torch.int64),
                _opt(starts, grad_output, torch.bool), _opt(zoneout, grad_output, acc), T, B, H,
                CELL=CELL_IDS[kind.name], G=kind.gates, HAS_LENGTHS=lengths is not None,
                HAS_RESETS=starts is not None, HAS_ZONEOUT=zoneout is not None, **meta)
            torch.mm(dhw[t], w_hh, out=dh_mm)
        # The first step's entering state is h0 (the segment starts after it are in h0_acc already).
        grad_h0 = dh_mm + dh
        grad_c0 = dc
        if starts is not None:
            grad_h0 = grad_h0 + h0_acc
            grad_c0 = grad_c0 + c0_acc if lstm else grad_c0
        grad_h0 = grad_h0.to(grad_output.dtype)
        grad_c0 = grad_c0.to(grad_output.dtype) if lstm else _dummy(grad_output)
        return LayerNormBackward(grad_xg, dhw, grad_h0, grad_c0, ln_hh_acc, b_hh_acc, ln_c_acc)


def _opt(t: Optional[Tensor], like: Tensor, dtype=None) -> Tensor:
    """An optional pointer argument: the tensor, or an empty one (its flag keeps the kernel from reading it)."""
    return t if t is not None else _dummy(like, dtype)
