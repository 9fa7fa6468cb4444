"""Grid-wide barrier for the persistent kernels: a monotonically increasing arrival counter.

Every program adds 1 after step s and waits until the counter reaches (s + 1) · num_programs, so the counter never
needs resetting inside a launch (the host zeroes it before each launch). Memory ordering, as in CUDA's grid.sync():
  debug_barrier (bar.sync) → the CTA's stores of this step happen-before thread 0's release;
  atomic add with release semantics at GPU scope → publishes them to the other programs;
  spin on atomic reads with acquire semantics → their stores are visible to this program afterwards;
  debug_barrier → no thread of the CTA reads the next step's inputs before the acquire.
(Scalar atomics run on one thread per program; Triton broadcasts the result to the others.)
With one program the barrier is skipped: that is the form the interpreter runs, whose programs run one after
another and would spin forever on a real barrier. Co-residency of all programs is the launcher's job (grid ≤ SMs,
one program per SM fits by construction).
"""
import triton
import triton.language as tl


@triton.jit
def grid_barrier(counter_ptr, target):
    if tl.num_programs(0) > 1:
        tl.debug_barrier()
        tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
        arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
        while arrived < target:
            arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()
