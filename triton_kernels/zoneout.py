"""Zoneout inside the kernels: the state mix of the forward and the gradient split of the backward
(csrc/sequence/driver.h: zone_out, split_zoneout_grad).

The host passes the keep-masks `zoneout` [S, T, B, H] in the cell dtype (S = 2 for LSTM: h then c; 1 for GRU); the
step helpers hand each tile its step's [B, H] slices. Forward: the cell's candidate state ĥ (and ĉ) becomes
ĥ + m·(previous − ĥ), previous = the state the step started from (h0/c0 at a segment start). Backward: of the
gradient g of a zoned-out state, m·g reaches the previous state directly and (1 − m)·g the candidate. Every helper
is a plain return when HAS_ZONEOUT is False: the flag compiles the zoneout work away (no mask loads).
"""
import triton
import triton.language as tl


@triton.jit
def zone_out(candidate, previous, keep_ptr, offs, mask, HAS_ZONEOUT: tl.constexpr):
    """candidate, previous [BLOCK_B, BLOCK_H] (accumulator dtype); keep_ptr [B, H] the step's mask of this state.
    -> candidate + m·(previous − candidate). Padded rows (candidate replaced by previous later) are unaffected."""
    if HAS_ZONEOUT:
        m = tl.load(keep_ptr + offs, mask=mask, other=0.0).to(candidate.dtype)
        candidate = candidate + m * (previous - candidate)
    return candidate


@triton.jit
def split_zoneout_grad(grad, keep_ptr, offs, mask, HAS_ZONEOUT: tl.constexpr):
    """grad [BLOCK_B, BLOCK_H]: dL/d(zoned-out state). -> (kept = m·grad, the part that reaches the previous state
    directly; grad − kept, the part that reaches the candidate). Without zoneout: (grad, grad), the first unused."""
    kept = grad
    if HAS_ZONEOUT:
        m = tl.load(keep_ptr + offs, mask=mask, other=0.0).to(grad.dtype)
        kept = m * grad
        grad = grad - kept
    return kept, grad


@triton.jit
def rejoin_kept_grad(grad_prev, kept, HAS_ZONEOUT: tl.constexpr):
    """dL/d(previous state) through the cell (grad_prev) plus the kept part of split_zoneout_grad (with zoneout)."""
    if HAS_ZONEOUT:
        grad_prev = grad_prev + kept
    return grad_prev
