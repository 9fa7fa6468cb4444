"""In-sequence resets inside the kernels: the rows of a step that start from the initial state, and the state and
state-gradient moves they imply (csrc/sequence/driver.h: reset_starts, previous_states, move_reset_grad).

The host passes `starts` [T, B] bool (layer.reset_starts: step t of row b starts a segment). Forward: the state a
step reads for such a row is h0/c0 instead of the previous step's. Backward: the gradient of the state entering such
a step belongs to h0/c0, so it is added to an accumulator and the carry into the neighbour step is zero. Every
helper is a plain load/return when HAS_RESETS is False: the flag compiles the reset work away.
"""
import triton
import triton.language as tl


@triton.jit
def segment_starts(starts_t_ptr, rows64, row_ok, HAS_RESETS: tl.constexpr):
    """starts_t_ptr: [B] bool, one step's row of `starts`. -> [BLOCK_B] bool: rows that start from the initial
    state at that step (all False without resets)."""
    if HAS_RESETS:
        fresh = tl.load(starts_t_ptr + rows64, mask=row_ok, other=0) != 0
    else:
        fresh = tl.zeros_like(row_ok)
    return fresh


@triton.jit
def load_entering_state(prev_ptr, init_ptr, offs, mask, fresh, HAS_RESETS: tl.constexpr, CACHE: tl.constexpr):
    """The [BLOCK_B, X] state a step starts from: prev_ptr's rows ([B, X]), init_ptr's (h0 or c0, [B, X]) where
    `fresh` [BLOCK_B]. One load through per-row pointers (two masked loads would hold both tiles in registers).
    CACHE: the load's cache modifier ("" or ".cg" for states other programs wrote in the same launch)."""
    if HAS_RESETS:
        v = tl.load(tl.where(fresh[:, None], init_ptr + offs, prev_ptr + offs), mask=mask, other=0.0,
                    cache_modifier=CACHE)
    else:
        v = tl.load(prev_ptr + offs, mask=mask, other=0.0, cache_modifier=CACHE)
    return v


@triton.jit
def move_to_initial(grad, acc_ptr, offs, mask, fresh, HAS_RESETS: tl.constexpr):
    """grad [BLOCK_B, X]: dL/d(state entering a step). Where `fresh`, that step started from the initial state: the
    gradient is added to acc_ptr ([B, X], cell dtype; grad_h0/grad_c0 without the last step's part) and the carry
    into the neighbour step becomes zero. Each [rows, units] tile belongs to one program for the whole sweep, so the
    read-modify-write needs no atomics."""
    if HAS_RESETS:
        f = fresh[:, None]
        acc = tl.load(acc_ptr + offs, mask=mask & f, other=0.0)
        tl.store(acc_ptr + offs, (acc + grad).to(acc_ptr.dtype.element_ty), mask=mask & f)
        grad = tl.where(f, 0.0, grad)
    return grad
