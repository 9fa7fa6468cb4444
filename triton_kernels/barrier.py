"""Grid-wide barrier for the persistent kernels: a monotonically increasing arrival counter, with a bounded spin.

Every program adds 1 after step s and waits until the counter reaches (s + 1) · num_programs, so the counter never
needs resetting inside a launch (the host zeroes it before each launch). Memory ordering, as in CUDA's grid.sync():
  debug_barrier (bar.sync) → the CTA's stores of this step happen-before thread 0's release;
  atomic add with release semantics at GPU scope → publishes them to the other programs;
  spin on atomic reads with acquire semantics → their stores are visible to this program afterwards;
  debug_barrier → no thread of the CTA reads the next step's inputs before the acquire.
(Scalar atomics run on one thread per program; Triton broadcasts the result to the others.)
With one program the barrier is skipped: that is the form the interpreter runs.

Co-residency: the launchers launch the persistent kernels cooperatively (launch_cooperative_grid=True, grid ≤ SM
count): the driver starts all programs at once or fails the launch, even with other streams, NCCL or MPS clients
sharing the GPU. A plain launch gives no such guarantee, and a program that never starts would leave the others
spinning forever.

The bounded spin (defence in depth: it can only trigger if co-residency or the barrier itself is broken): after
`spin_limit` polls a waiting program gives up. The first one to give up claims the record (an atomic on the
counter's second word) and writes (program, step, counter seen, target) into the stall record, then its flag;
every program that gave up stops its step loop, so the launch ends (its results are garbage). The record lives in
pinned host memory that the kernel writes through its device mapping (UVA), so the host reads it with no GPU
synchronization and no extra work on the hot path: every persistent launch first calls raise_if_stalled(), which
raises the stall of an earlier launch on that device as a RuntimeError (and clears it). Not a device-side assert:
an assert (or __trap) poisons the CUDA context, so every later CUDA call of the process fails, and it says nothing
about where the kernel stalled. A stall is therefore reported by the next persistent launch on the device (in
training: the backward of the same step, or the next forward), or at once by synchronizing and calling
raise_if_stalled(device).
"""
from __future__ import annotations

from typing import Dict

import torch
import triton
import triton.language as tl

SPIN_LIMIT = 1 << 22  # polls (≈ seconds on an H100); a healthy barrier waits at most one step's work (≪ 1e4 polls)
STALL_WORDS = 5       # flag, program, step, counter seen, target


@triton.jit
def grid_barrier(counter_ptr, target, stall_ptr, spin_limit, step):
    """Waits until the counter reaches `target`; -> False (and the stall recorded) after spin_limit polls.
    counter_ptr: [2] int32 (arrivals, stall claim); stall_ptr: [STALL_WORDS] int32 host-mapped."""
    arrived = target
    if tl.num_programs(0) > 1:
        tl.debug_barrier()
        tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
        arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
        polls = 0
        while (arrived < target) & (polls < spin_limit):
            arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
            polls += 1
        if arrived < target:
            if tl.atomic_cas(counter_ptr + 1, 0, 1, sem="relaxed", scope="gpu") == 0:
                tl.store(stall_ptr + 1, tl.program_id(0))
                tl.store(stall_ptr + 2, step)
                tl.store(stall_ptr + 3, arrived)
                tl.store(stall_ptr + 4, target)
                tl.store(stall_ptr, 1)
        tl.debug_barrier()
    return arrived >= target


# ------------------------------------------------------------------------------------------------------ host side
class BarrierStall(RuntimeError):
    """A persistent kernel gave up waiting at its grid barrier (raised by raise_if_stalled)."""


_RECORDS: Dict[str, torch.Tensor] = {}


def stall_record(device: torch.device) -> torch.Tensor:
    """[STALL_WORDS] int32 that the persistent kernels on `device` write a stall into: pinned host memory for a GPU
    (mapped into every GPU's address space), a plain CPU tensor for the interpreter. Allocate it outside graph
    capture (the first persistent launch on a device does)."""
    name = str(device)
    rec = _RECORDS.get(name)
    if rec is None:
        rec = torch.zeros(STALL_WORDS, dtype=torch.int32, pin_memory=device.type == "cuda")
        _RECORDS[name] = rec
    return rec


def raise_if_stalled(device: torch.device) -> None:
    """Raises BarrierStall for the stall an earlier persistent launch on `device` recorded (then clears the record).
    Reads host memory only: no GPU synchronization, so a launch still running reports at a later check."""
    rec = _RECORDS.get(str(device))
    if rec is None or int(rec[0]) == 0:
        return
    program, step, seen, target = (int(v) for v in rec[1:])
    rec.zero_()
    raise BarrierStall(
        f"rnnfused triton: a persistent kernel on {device} gave up waiting at its grid barrier (program {program}, "
        f"step {step}: {seen} of {target} arrivals after the spin limit); the results of that call are wrong. The "
        "programs of a cooperative launch should all be resident: please report this with your GPU, driver and "
        "whether MPS or other processes share the GPU; RNNFUSED_TRITON_PATH=step avoids the persistent kernel.")
