"""Every Triton recurrence kernel compiles for sm_90 (H100/H200) without a GPU, within the shared-memory limit; the
persistent kernels compile for a cooperative launch and their grid barrier's spin is bounded in the PTX.

Runs `python -m rnnfused._triton.compile_check --arch 90 --json` in a subprocess without TRITON_INTERPRET (this
session may have set it: kernels defined in interpreter mode cannot be compiled) and prints the registers / spills /
shared memory table (shown with `pytest -s` or `-rA`).
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
pytest.importorskip("triton.backends.nvidia")


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "rnnfused._triton.compile_check", "--arch", "90", "--json", "--jobs",
                           str(min(4, os.cpu_count() or 1))], capture_output=True, text=True, env=env, timeout=1500)
    assert proc.stdout.strip(), proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_kernel_compiles_for_sm90_within_shared_memory(compiled):
    from rnnfused._triton.compile_check import shared_limit

    SM90_SHARED_LIMIT = shared_limit(90)

    print(f"\n{'kernel':28} {'cell':8} {'dtype':5} {'config':7} {'proj':5} {'resets':6} {'zoneout':7} {'regs':>4} "
          f"{'spill st/ld':>11} {'smem':>6}")
    for r in compiled:
        print(f"{r['kernel']:28} {r['cell']:8} {r['dtype']:5} {r['config']:7} {str(r['proj']):5} {str(r['resets']):6} "
              f"{str(r['zoneout']):7} {r['registers']:>4} {r['spill_stores']:>5}/{r['spill_loads']:<5} "
              f"{r['shared']:>6}")
    failed = [(r["kernel"], r["cell"], r["dtype"], r["config"], r["error"][-500:]) for r in compiled if not r["ok"]]
    assert not failed, failed
    too_big = [(r["kernel"], r["cell"], r["dtype"], r["config"], r["shared"]) for r in compiled
               if r["shared"] > SM90_SHARED_LIMIT]
    assert not too_big, too_big
    kernels = {r["kernel"] for r in compiled}
    assert kernels == {"forward_step_kernel", "backward_step_kernel", "forward_persistent_kernel",
                       "backward_persistent_kernel", "layer_norm_forward_step_kernel",
                       "layer_norm_backward_step_kernel"}
    assert {r["dtype"] for r in compiled} == {"fp32", "bf16", "fp16", "fp64"}
    assert {r["kernel"] for r in compiled if r["resets"]} == kernels  # every kernel's HAS_RESETS variant
    for cell in ("lstm", "gru"):  # every kernel's HAS_ZONEOUT variant for the cells that take zoneout
        assert {r["kernel"] for r in compiled if r["zoneout"] and r["cell"] == cell} == kernels, cell
    assert any(r["zoneout"] and r["resets"] for r in compiled)
    assert all(r["registers"] > 0 for r in compiled), "ptxas -v gave no register count"


def test_layer_norm_kernels_compile_without_spills(compiled):
    """The LayerNorm per-step kernels (whole G·H rows per program) for LSTM and GRU in every dtype, at H = 256 and
    1024 with the launcher's blocks: no register spills."""
    ln = [r for r in compiled if r["kernel"].startswith("layer_norm_")]
    assert {(r["cell"], r["dtype"]) for r in ln} == {(c, d) for c in ("lstm", "gru")
                                                     for d in ("fp32", "bf16", "fp16", "fp64")}
    spilled = [(r["kernel"], r["cell"], r["dtype"], r["config"], r["spill_stores"]) for r in ln
               if r["spill_stores"] or r["spill_loads"]]
    assert not spilled, spilled


def test_persistent_kernels_are_cooperative_with_a_bounded_barrier_spin(compiled):
    """launch_cooperative_grid is in the compiled kernels' metadata (the driver then launches all programs at once or
    fails), and the PTX compares the poll count with the spin_limit parameter (the wait loop ends)."""
    persistent = [r for r in compiled if "persistent" in r["kernel"]]
    step = [r for r in compiled if "step" in r["kernel"]]
    assert persistent and step
    assert all(r["cooperative"] and r["spin_bounded"] for r in persistent), \
        [(r["kernel"], r["cell"], r["dtype"], r["cooperative"], r["spin_bounded"]) for r in persistent]
    assert not any(r["cooperative"] for r in step)


def test_the_ptx_check_finds_a_compared_parameter_and_rejects_a_dead_one():
    from rnnfused._triton.compile_check import compares_param

    ptx = """
    ld.param.b32 	%r7, [k_param_3];
    mov.u32 %r9, %r7;
    setp.lt.s32 	%p2, %r12, %r9;
    ld.param.b32 %r8, [k_param_4];
    add.s32 %r10, %r8, 1;
    setp.lt.s32 %p3, %r80, %r12;
    """
    assert compares_param(ptx, "k", 3)
    assert not compares_param(ptx, "k", 4)  # loaded, never compared
    assert not compares_param(ptx, "k", 5)  # not even loaded (dead parameter)
