"""Test-session setup.

Triton decides between compiled and interpreted kernels when a kernel is *defined* (decorated), so
TRITON_INTERPRET must be set before rnnfused._triton is first imported. Without a CUDA GPU (CI) the Triton
backend's tests run in the CPU interpreter: set it here, before any test module is collected. Nothing else reads
it (the other backends never import triton, and rnnfused imports the Triton backend lazily), so the rest of the
suite is unaffected. With a GPU the variable is left alone and the kernels are compiled.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
