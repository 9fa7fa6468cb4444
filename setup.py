"""Builds rnnfused._C (C++ CPU ops always; CUDA ops when nvcc and a CUDA-enabled torch are present).

    pip install --no-build-isolation .     # build against the torch installed here (needs setuptools>=77, ninja)
    pip install .                          # isolated build: pip installs a supported torch into a build env first
    pip install --no-build-isolation -e .  # development (what .ci/env does)

The project metadata lives in pyproject.toml; this file adds what depends on the torch found at build time: the
extension, and the runtime requirement on torch (a compiled extension works only with the torch release it was
built against, so a built wheel requires that minor release; the sdist states the whole supported range). It also
writes rnnfused/_build_info.py next to the extension (the torch it was built against), which ``import rnnfused``
compares with the installed torch (rnnfused/_extension.py).

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
import sys
import warnings

import setuptools
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as SetuptoolsBuildExt

ROOT = os.path.dirname(os.path.abspath(__file__))

# The torch releases this source is built and tested with. pyproject.toml's [build-system] requires the same range
# (tests/test_packaging.py checks that they agree).
TORCH_SUPPORTED = ">=2.11,<2.14"
MIN_SETUPTOOLS = 77  # SPDX `license` in pyproject.toml


def _check_setuptools():
    if int(setuptools.__version__.split(".")[0]) < MIN_SETUPTOOLS:
        sys.exit(f"rnnfused needs setuptools>={MIN_SETUPTOOLS} to build, found {setuptools.__version__} (with "
                 f"--no-build-isolation pip uses the one installed here): pip install 'setuptools>={MIN_SETUPTOOLS}' "
                 "ninja")


try:
    import torch
except ImportError:  # metadata and sdist need no torch; building the extension does (see NoTorchBuildExt)
    torch = None


def _want_cuda():
    from torch.utils.cpp_extension import CUDA_HOME

    forced = os.environ.get("RNNFUSED_BUILD_CUDA")
    if forced is not None:
        return forced.strip() not in ("0", "", "false", "False")
    has_nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    return torch.version.cuda is not None and (has_nvcc or shutil.which("nvcc") is not None)


def nvcc_version(cuda_home=None):
    """(major, minor) of the nvcc in cuda_home (default: torch's CUDA_HOME) or on PATH, or None."""
    if cuda_home is None and torch is not None:
        from torch.utils.cpp_extension import CUDA_HOME as cuda_home
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
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    # cuda/persistent/pack.cpp is plain ATen: every build has the weight-packing op, so CPU tests check its layout.
    cpp_sources = ["csrc/module.cpp", "csrc/ops.cpp", "csrc/cuda/persistent/pack.cpp"]
    cpp_sources += _sources("sequence/*.cpp", "cpu/*.cpp", "cpu/fused/*.cpp")
    # -fno-trapping-math lets GCC if-convert the selects in the vectorized CPU loops (results are unchanged).
    # -fopenmp: at::parallel_for is an OpenMP region compiled into the caller (ATen/ParallelOpenMP.h); without it
    # the CPU kernels' parallel loops run on one thread. The linked libgomp.so.1 resolves to the one torch already
    # loaded (same soname), so there is one thread pool. ISA-specific code uses target attributes (csrc/cpu/fused).
    cxx_flags = ["-O3", "-fno-trapping-math", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if not _want_cuda():
        return CppExtension("rnnfused._C", cpp_sources, extra_compile_args={"cxx": cxx_flags},
                            extra_link_args=link_flags)
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
        extra_link_args=link_flags,
        extra_compile_args={
            "cxx": cxx_flags,
            # No --use_fast_math: it would swap expf/tanhf/division for approximations in the float32 kernels (float64
            # is unaffected); the kernels are memory- and launch-bound, so accurate math costs little.
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr"],
        },
    )


def _release(version):
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def _torch_requirement():
    """The sdist: every supported torch. A build: the torch minor release it is built against."""
    if torch is None or "sdist" in sys.argv[1:]:
        return f"torch{TORCH_SUPPORTED}"
    major, minor = _release(torch.__version__)
    low, high = (_release(v) for v in re.findall(r"\d+\.\d+", TORCH_SUPPORTED))
    if not low <= (major, minor) < high:
        warnings.warn(f"building rnnfused against torch {torch.__version__}, outside the supported range "
                      f"{TORCH_SUPPORTED}: untested")
    return f"torch>={major}.{minor},<{major}.{minor + 1}"


def _build_info_text(with_cuda):
    return (
        "# Written by setup.py when it built rnnfused._C: the torch it was built against (see _extension.py).\n"
        f"TORCH_VERSION = {str(torch.__version__)!r}\n"
        f"TORCH_CUDA_VERSION = {torch.version.cuda!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"CUDA_ARCH_LIST = {(os.environ.get('TORCH_CUDA_ARCH_LIST') if with_cuda else None)!r}\n"
    )


def _build_ext_class():
    if torch is None:
        return NoTorchBuildExt
    from torch.utils.cpp_extension import BuildExtension

    class BuildExtensionWithInfo(BuildExtension):
        """torch's BuildExtension, plus rnnfused/_build_info.py written next to the built _C."""

        def _info_path(self):
            return os.path.join(os.path.dirname(self.get_ext_fullpath("rnnfused._C")), "_build_info.py")

        def run(self):
            super().run()
            with_cuda = any("RNNFUSED_WITH_CUDA" in (name for name, _ in ext.define_macros)
                            for ext in self.extensions)
            os.makedirs(os.path.dirname(self._info_path()), exist_ok=True)
            with open(self._info_path(), "w") as f:
                f.write(_build_info_text(with_cuda))

    return BuildExtensionWithInfo


class NoTorchBuildExt(SetuptoolsBuildExt):
    """Stands in for torch's BuildExtension when torch is not importable: building _C then fails with a clear
    message (metadata and sdist do not need torch)."""

    def run(self):
        raise SystemExit(
            "rnnfused: torch must be installed to build the extension rnnfused._C. Either install torch first and "
            "build against it with `pip install --no-build-isolation .` (also needs setuptools>=77 and ninja), or "
            f"let pip install torch{TORCH_SUPPORTED} into an isolated build environment (`pip install .`).")


if __name__ == "__main__":  # pip / setuptools run this file as __main__; tests import the helpers above
    _check_setuptools()
    setup(
        ext_modules=[_extension() if torch is not None else Extension("rnnfused._C", ["csrc/module.cpp"])],
        cmdclass={"build_ext": _build_ext_class()},
        install_requires=[_torch_requirement()],
    )
