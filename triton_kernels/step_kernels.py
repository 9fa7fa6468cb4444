"""Per-step kernels: one launch per time step, grid = all [BLOCK_B × BLOCK_H] tiles, one tile per program.

Each program computes its slice of h_{t-1} W_hhᵀ with tl.dot and the pointwise update in the same kernel (no
separate GEMM launch); the launch boundary is the step-to-step synchronisation. `s` and `T` are not specialized
(do_not_specialize), so one compiled kernel serves every step and every sequence length.
"""
import triton
import triton.language as tl

from .steps import backward_step, forward_step


@triton.jit(do_not_specialize=["s", "T"])
def forward_step_kernel(
    s, T, xg_ptr, b_hh_ptr, w_hh_ptr, h0_ptr, h_buf_ptr, h_n_ptr, c0_ptr, cells_ptr, out_ptr, saved_ptr,
    lengths_ptr, starts_ptr, zoneout_ptr, B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    HAS_RESETS: tl.constexpr, HAS_ZONEOUT: tl.constexpr, WRITE_STATE: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    forward_step(s, T, tl.program_id(0), tl.num_programs(0), xg_ptr, b_hh_ptr, w_hh_ptr, h0_ptr, h_buf_ptr,
                 h_n_ptr, c0_ptr, cells_ptr, out_ptr, saved_ptr, lengths_ptr, starts_ptr, zoneout_ptr, B, H, K, CELL,
                 G, S, HAS_BIAS, HAS_LENGTHS, HAS_RESETS, HAS_ZONEOUT, WRITE_STATE, REVERSE, BLOCK_B, BLOCK_H,
                 BLOCK_K, PRECISION)


@triton.jit(do_not_specialize=["s", "T"])
def backward_step_kernel(
    s, T, dgx_ptr, dgh_ptr, w_hh_ptr, grad_h_n_ptr, carry_buf_ptr, grad_h_last_ptr, grad_out_ptr, dr_ptr,
    grad_c_n_ptr, dc_buf_ptr, grad_c0_ptr, saved_ptr, c0_ptr, cells_ptr, h_prev_seq_ptr, output_ptr, lengths_ptr,
    starts_ptr, h0_acc_ptr, c0_acc_ptr, zoneout_ptr, B, H, K,
    CELL: tl.constexpr, G: tl.constexpr, S: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_RESETS: tl.constexpr,
    HAS_ZONEOUT: tl.constexpr, FROM_DR: tl.constexpr, SPLIT: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    backward_step(s, T, tl.program_id(0), tl.num_programs(0), dgx_ptr, dgh_ptr, w_hh_ptr, grad_h_n_ptr,
                  carry_buf_ptr, grad_h_last_ptr, grad_out_ptr, dr_ptr, grad_c_n_ptr, dc_buf_ptr, grad_c0_ptr,
                  saved_ptr, c0_ptr, cells_ptr, h_prev_seq_ptr, output_ptr, lengths_ptr, starts_ptr, h0_acc_ptr,
                  c0_acc_ptr, zoneout_ptr, B, H, K, CELL, G, S, HAS_LENGTHS, HAS_RESETS, HAS_ZONEOUT, FROM_DR, SPLIT,
                  REVERSE, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
