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

PARALLEL RUNS: the README's test command runs pytest-xdist workers (`-n auto --dist loadfile --no-loadscope-reorder`:
one per core, each taking whole files in collection order). The files that build or compile for minutes are
collected first, so that one worker runs them while the others take the rest, instead of one worker finishing them
alone at the end.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("RNNFUSED_TRITON_AUTOTUNE", "0")


# Longest first: the sdist -> fresh venv build, nvcc of the persistent kernels, the CUDA host-code syntax check, the
# examples' training runs (tests/test_*.py names; the rest keep pytest's order).
_LONG_FILES = ("test_packaging.py", "test_persistent_compile.py", "test_cuda_host_compile.py", "test_examples.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort: the order within a file stays
