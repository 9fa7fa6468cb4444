"""Where a fused cell step spends its time on the CPU: per-step µs of nn.*Cell, the fused cell module, the fused op
alone, and the GEMMs it runs (forward: x W_ihᵀ and h W_hhᵀ; backward: dX, dH, dW_ih, dW_hh) timed alone with torch.mm.
Minimum over interleaved batches (the least disturbed by other work on a shared machine), no_grad, one thread.

    bash .ci/env python -m benchmarks.cell_step_profile      (the profile table of benchmarks/results/cells_cpu.md)
"""
import time
from typing import Callable, Dict

import torch

import rnnfused
from rnnfused import _cell_ops
from rnnfused._cells import CELL_KINDS

SHAPES = ((1, 51), (97, 51), (97, 256))  # (B, H), input size = H


def best_of(fns: Dict[str, Callable], batches: int = 25, calls: int = 100) -> Dict[str, float]:
    """µs per call of each function: the minimum over ``batches`` interleaved batches of ``calls`` calls."""
    best = {name: float("inf") for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1e6)
    return best


def profile(kind, dtype: torch.dtype, B: int, H: int) -> Dict[str, float]:
    extra = {"nonlinearity": kind.nonlinearity} if kind.nonlinearity else {}
    ref = kind.torch_cell(H, H, **extra).to(dtype)
    fused = getattr(rnnfused, kind.cell_module).from_module(ref)
    x, h = torch.randn(B, H, dtype=dtype), torch.randn(B, H, dtype=dtype)
    hx = (h, h) if kind.has_cell_state else h
    w_ih, w_hh = ref.weight_ih.detach(), ref.weight_hh.detach()
    args = _cell_ops.cell_forward_args(kind, x, h, h, w_ih, w_hh, ref.bias_ih.detach(), ref.bias_hh.detach())
    op = _cell_ops.cell_op(kind)
    dg = torch.randn(B, kind.gates * H, dtype=dtype)  # [B, G*H] a gate gradient
    with torch.no_grad():
        r = best_of({"nn_module": lambda: ref(x, hx), "fused_module": lambda: fused(x, hx),
                     "fused_op": lambda: op(*args),
                     "fwd_gemms": lambda: (torch.mm(x, w_ih.t()), torch.mm(h, w_hh.t())),
                     "bwd_gemms": lambda: (torch.mm(dg, w_ih), torch.mm(dg, w_hh), torch.mm(dg.t(), x),
                                           torch.mm(dg.t(), h))})
    r["fwd_gemm_share"] = r["fwd_gemms"] / r["fused_op"]
    return r


def main() -> None:
    torch.set_num_threads(1)
    families = set()
    for kind in CELL_KINDS.values():
        if kind.family in families:  # one cell per nn family (rnn_relu: rnn_tanh's shapes and cost)
            continue
        families.add(kind.family)
        for dtype in (torch.float32, torch.float64):
            for B, H in SHAPES:
                r = profile(kind, dtype, B, H)
                print(f"{kind.name} {str(dtype)[6:]} B{B} H{H} " + " ".join(f"{n}={v:.2f}" if n.endswith("share")
                                                                          else f"{n}={v:.1f}" for n, v in r.items()),
                      flush=True)


if __name__ == "__main__":
    main()
