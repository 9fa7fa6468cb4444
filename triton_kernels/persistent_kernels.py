"""Persistent kernels: ONE launch runs all T steps of a layer-direction.

Grid ≤ SM count (co-resident); each program owns the tiles pid, pid + P, … of the [B × H] tile grid for the
whole sequence, so its rows of W_hh (all gate blocks of its units) are the same every step and stay hot in its
L1/L2 working set (H=1024 LSTM in bf16: 8 MB, well inside the H100's 50 MB L2). A grid barrier (barrier.py)
separates the steps; the launch is cooperative (all programs resident), and a program whose barrier gives up
(stall recorded in stall_ptr) stops working: the remaining iterations skip. With one program (the interpreter's
form) the barrier is a no-op and the program loops over every tile. T and spin_limit are runtime arguments, not
specialized: no recompilation when only the sequence length changes.
"""
import triton
import triton.language as tl

from .barrier import grid_barrier
from .steps import backward_step, forward_step


@triton.jit(do_not_specialize=["T", "spin_limit"])
def forward_persistent_kernel(
    T, xg_ptr, b_hh_ptr, w_hh_ptr, h0_ptr, h_buf_ptr, h_n_ptr, c0_ptr, cells_ptr, out_ptr, saved_ptr,
    lengths_ptr, starts_ptr, zoneout_ptr, barrier_ptr, stall_ptr, spin_limit, B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_RESETS: tl.constexpr, HAS_ZONEOUT: tl.constexpr, WRITE_STATE: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    ok = T > 0
    for s in range(0, T):
        if ok:
            forward_step(s, T, pid, num_programs, xg_ptr, b_hh_ptr, w_hh_ptr, h0_ptr, h_buf_ptr, h_n_ptr, c0_ptr,
                         cells_ptr, out_ptr, saved_ptr, lengths_ptr, starts_ptr, zoneout_ptr, B, H, K, CELL, G, S,
                         HAS_BIAS, HAS_LENGTHS, HAS_RESETS, HAS_ZONEOUT, WRITE_STATE, REVERSE, BLOCK_B, BLOCK_H,
                         BLOCK_K, PRECISION)
            ok = grid_barrier(barrier_ptr, (s + 1) * num_programs, stall_ptr, spin_limit, s)


@triton.jit(do_not_specialize=["T", "spin_limit"])
def backward_persistent_kernel(
    T, dgx_ptr, dgh_ptr, w_hh_ptr, grad_h_n_ptr, carry_buf_ptr, grad_h_last_ptr, grad_out_ptr, dr_ptr,
    grad_c_n_ptr, dc_buf_ptr, grad_c0_ptr, saved_ptr, c0_ptr, cells_ptr, h_prev_seq_ptr, output_ptr, lengths_ptr,
    starts_ptr, h0_acc_ptr, c0_acc_ptr, zoneout_ptr, barrier_ptr, stall_ptr, spin_limit, B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_RESETS: tl.constexpr,
    HAS_ZONEOUT: tl.constexpr, FROM_DR: tl.constexpr, SPLIT: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    num_programs = tl.num_programs(0)
    ok = T > 0
    for i in range(0, T):
        if ok:
            backward_step(T - 1 - i, T, pid, num_programs, dgx_ptr, dgh_ptr, w_hh_ptr, grad_h_n_ptr, carry_buf_ptr,
                          grad_h_last_ptr, grad_out_ptr, dr_ptr, grad_c_n_ptr, dc_buf_ptr, grad_c0_ptr, saved_ptr,
                          c0_ptr, cells_ptr, h_prev_seq_ptr, output_ptr, lengths_ptr, starts_ptr, h0_acc_ptr,
                          c0_acc_ptr, zoneout_ptr, B, H, K, CELL, G, S, HAS_LENGTHS, HAS_RESETS, HAS_ZONEOUT, FROM_DR,
                          SPLIT, REVERSE, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
            ok = grid_barrier(barrier_ptr, (i + 1) * num_programs, stall_ptr, spin_limit, T - 1 - i)
