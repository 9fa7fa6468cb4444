"""Every Triton recurrence kernel compiles for sm_90 (H100/H200) without a GPU, within the shared-memory limit.

Runs `python -m rnnfused._triton.compile_check --arch 90 --json` in a subprocess without TRITON_INTERPRET (this session may
have set it: kernels defined in interpreter mode cannot be compiled) and prints the registers / spills / shared
memory table (shown with `pytest -s` or `-rA`).
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

    print(f"\n{'kernel':28} {'cell':8} {'dtype':5} {'config':7} {'proj':4} {'regs':>4} {'spill st/ld':>11} {'smem':>6}")
    for r in compiled:
        print(f"{r['kernel']:28} {r['cell']:8} {r['dtype']:5} {r['config']:7} {str(r['proj']):4} {r['registers']:>4} "
              f"{r['spill_stores']:>5}/{r['spill_loads']:<5} {r['shared']:>6}")
    failed = [(r["kernel"], r["cell"], r["dtype"], r["config"], r["error"][-500:]) for r in compiled if not r["ok"]]
    assert not failed, failed
    too_big = [(r["kernel"], r["cell"], r["dtype"], r["config"], r["shared"]) for r in compiled
               if r["shared"] > SM90_SHARED_LIMIT]
    assert not too_big, too_big
    kernels = {r["kernel"] for r in compiled}
    assert kernels == {"forward_step_kernel", "backward_step_kernel", "forward_persistent_kernel",
                       "backward_persistent_kernel"}
    assert {r["dtype"] for r in compiled} == {"fp32", "bf16", "fp16", "fp64"}
    assert all(r["registers"] > 0 for r in compiled), "ptxas -v gave no register count"
