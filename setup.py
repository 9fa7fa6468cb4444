"""Builds rnnfused._C (C++ CPU ops always; CUDA ops when nvcc and a CUDA-enabled torch are present).

    pip install --no-build-isolation -e .        # build isolation would fetch a multi-GB torch

Environment:
    RNNFUSED_BUILD_CUDA=0|1   force the CUDA part off or on (default: on when torch.version.cuda and nvcc exist)
    TORCH_CUDA_ARCH_LIST      GPU architectures (default "8.0;9.0"); sm_90 code paths are guarded at run time
    MAX_JOBS                  parallel compile jobs (ninja)
"""
import glob
import os
import re
import shutil

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(ROOT, "rnnfused", "version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def _want_cuda():
    forced = os.environ.get("RNNFUSED_BUILD_CUDA")
    if forced is not None:
        return forced.strip() not in ("0", "", "false", "False")
    has_nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    return torch.version.cuda is not None and (has_nvcc or shutil.which("nvcc") is not None)


def _sources(*patterns):
    out = []
    for pattern in patterns:
        out += sorted(glob.glob(os.path.join("csrc", pattern), recursive=True))
    return out


def _extension():
    cpp_sources = ["csrc/module.cpp", "csrc/ops.cpp"] + _sources("sequence/*.cpp", "cpu/*.cpp")
    # -fno-trapping-math lets GCC if-convert the selects in the vectorized CPU loops (results are unchanged).
    cxx_flags = ["-O3", "-fno-trapping-math"]
    if not _want_cuda():
        return CppExtension("rnnfused._C", cpp_sources, extra_compile_args={"cxx": cxx_flags})
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    cuda_sources = _sources("cuda/*.cpp", "cuda/*.cu", "cuda/kernels/*.cu")
    cuda_sources += _sources("cuda/persistent/*.cpp", "cuda/persistent/*.cu")  # the persistent path's launcher
    return CUDAExtension(
        "rnnfused._C",
        cpp_sources + cuda_sources,
        define_macros=[("RNNFUSED_WITH_CUDA", None)],
        extra_compile_args={
            "cxx": cxx_flags,
            # No --use_fast_math: it would swap expf/tanhf/division for approximations in the float32 kernels (float64
            # is unaffected); the kernels are memory- and launch-bound, so accurate math costs little.
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"],
        },
    )


setup(
    name="rnnfused",
    version=_version(),
    description="Fused LSTM/GRU/RNN kernels for PyTorch (C++, CUDA, Triton): drop-in nn.LSTM/GRU/RNN replacements",
    packages=["rnnfused", "rnnfused._triton"],
    package_dir={"rnnfused": "rnnfused", "rnnfused._triton": "triton_kernels"},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
    install_requires=["torch>=2.11"],
    extras_require={"triton": ["triton>=3.6"], "test": ["pytest", "pytest-benchmark"]},
)
