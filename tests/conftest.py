"""Test-session setup.

Triton decides between compiled and interpreted kernels when a kernel is *defined* (decorated), so
TRITON_INTERPRET must be set before rnnfused._triton is first imported. Without a CUDA GPU (CI) the Triton
backend's tests run in the CPU interpreter: set it here, before any test module is collected. Nothing else reads
it (the other backends never import triton, and rnnfused imports the Triton backend lazily), so the rest of the
suite is unaffected. With a GPU the variable is left alone and the kernels are compiled.

FIXED TRITON CONFIGS: RNNFUSED_TRITON_AUTOTUNE=0 for every test session, GPU or not (the GPU device check runs
pytest, so it gets them too): the Triton backend then uses its heuristic block configs and never times candidates
(no tuning pause per shape family, nothing read from or written to the on-disk config cache, the same kernels on
every run). Tests of the tuner set it back to 1 themselves. Outside pytest (benchmarks, examples) export
RNNFUSED_TRITON_AUTOTUNE=0 to get the same fixed configs.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("RNNFUSED_TRITON_AUTOTUNE", "0")
