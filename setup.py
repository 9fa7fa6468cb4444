"""Builds rnnfused._C (C++ CPU ops always; CUDA ops when nvcc and a CUDA-enabled torch are present).

    pip install --no-build-isolation -e .        # build isolation would fetch a multi-GB torch

Environment:
    RNNFUSED_BUILD_CUDA=0|1   force the CUDA part off or on (default: on when torch.version.cuda and nvcc exist)
    TORCH_CUDA_ARCH_LIST      GPU architectures (default: default_cuda_arch_list() below, by nvcc version, with PTX
                              for newer GPUs); the built list is recorded as rnnfused._C.cuda_arches
    MAX_JOBS                  parallel compile jobs (ninja)
"""
import glob
import os
import re
import shutil
import subprocess

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


def nvcc_version(cuda_home=CUDA_HOME):
    """(major, minor) of the nvcc that will build the extension, or None."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc") if cuda_home else shutil.which("nvcc")
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError, TypeError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def default_cuda_arch_list(version):
    """TORCH_CUDA_ARCH_LIST when the user sets none (flash-attention's practice: add architectures by nvcc version).

    SASS for sm_80 (runs on every 8.x GPU: A100, A10, RTX 30/40, L4, L40) and sm_90 (H100/H200), PTX of compute_90 so
    that any later GPU can JIT-compile the kernels, and, when nvcc can build them (12.8+), SASS for sm_100 (B200/B300,
    also runs on 10.3) and sm_120 (RTX 50, RTX PRO 6000, also runs on 12.1), so those start without a JIT."""
    archs = ["8.0", "9.0+PTX"]
    if version is not None and version >= (12, 8):
        archs += ["10.0", "12.0"]
    return ";".join(archs)


def cuda_targets(arch_list):
    """The code targets ("sm_80", "compute_90", ...) that torch's -gencode flags build for this arch list."""
    targets = set()
    for arch in arch_list.replace(" ", ";").split(";"):
        m = re.fullmatch(r"(\d+)\.(\d+)(a?)(\+PTX)?", arch.strip())
        if not m:
            return ["unknown:" + arch_list]  # a named list (Ampere, ...): the run-time probe still decides
        num = m.group(1) + m.group(2) + m.group(3)
        targets.add("sm_" + num)
        if m.group(4):
            targets.add("compute_" + num)
    return sorted(targets, key=lambda t: (int(re.sub(r"\D", "", t)), t.startswith("compute_"), t))


def _sources(*patterns):
    out = []
    for pattern in patterns:
        out += sorted(glob.glob(os.path.join("csrc", pattern), recursive=True))
    return out


def _extension():
    # cuda/persistent/pack.cpp is plain ATen: every build has the weight-packing op, so CPU tests check its layout.
    cpp_sources = ["csrc/module.cpp", "csrc/ops.cpp", "csrc/cuda/persistent/pack.cpp"]
    cpp_sources += _sources("sequence/*.cpp", "cpu/*.cpp")
    # -fno-trapping-math lets GCC if-convert the selects in the vectorized CPU loops (results are unchanged).
    cxx_flags = ["-O3", "-fno-trapping-math"]
    if not _want_cuda():
        return CppExtension("rnnfused._C", cpp_sources, extra_compile_args={"cxx": cxx_flags})
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        os.environ["TORCH_CUDA_ARCH_LIST"] = default_cuda_arch_list(nvcc_version())
    targets = ",".join(cuda_targets(os.environ["TORCH_CUDA_ARCH_LIST"]))
    cuda_sources = _sources("cuda/*.cpp", "cuda/*.cu", "cuda/kernels/*.cu")
    cuda_sources += _sources("cuda/persistent/*.cpp", "cuda/persistent/*.cu")  # the persistent path's launcher
    cuda_sources = [src for src in cuda_sources if src not in cpp_sources]
    return CUDAExtension(
        "rnnfused._C",
        cpp_sources + cuda_sources,
        define_macros=[("RNNFUSED_WITH_CUDA", None), ("RNNFUSED_CUDA_ARCHES", re.sub(r"[^a-z0-9_,:.]", "", targets))],
        extra_compile_args={
            "cxx": cxx_flags,
            # No --use_fast_math: it would swap expf/tanhf/division for approximations in the float32 kernels (float64
            # is unaffected); the kernels are memory- and launch-bound, so accurate math costs little.
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"],
        },
    )


if __name__ == "__main__":  # pip / setuptools run this file as __main__; tests import the helpers above
    setup(
        name="rnnfused",
        version=_version(),
        description="Fused LSTM/GRU/RNN kernels for PyTorch (C++, CUDA, Triton): drop-in nn.LSTM/GRU/RNN replacements",
        packages=["rnnfused", "rnnfused._triton"],
        package_dir={"rnnfused": "rnnfused", "rnnfused._triton": "triton_kernels"},
        package_data={"rnnfused": ["persistent_crossover.txt"]},
        ext_modules=[_extension()],
        cmdclass={"build_ext": BuildExtension},
        python_requires=">=3.10",
        install_requires=["torch>=2.11"],
        extras_require={"triton": ["triton>=3.6"], "test": ["pytest", "pytest-benchmark"]},
    )
