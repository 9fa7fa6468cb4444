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
    TORCH_CUDA_ARCH_LIST      GPU architectures (default "8.0;9.0"); sm_90 code paths are guarded at run time
    MAX_JOBS                  parallel compile jobs (ninja)
"""
import glob
import os
import re
import shutil
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

if int(setuptools.__version__.split(".")[0]) < MIN_SETUPTOOLS:
    sys.exit(f"rnnfused needs setuptools>={MIN_SETUPTOOLS} to build, found {setuptools.__version__} (with "
             f"--no-build-isolation pip uses the one installed here): pip install 'setuptools>={MIN_SETUPTOOLS}' ninja")

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


def _sources(*patterns):
    out = []
    for pattern in patterns:
        out += sorted(glob.glob(os.path.join("csrc", pattern), recursive=True))
    return out


def _extension():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

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


setup(
    ext_modules=[_extension() if torch is not None else Extension("rnnfused._C", ["csrc/module.cpp"])],
    cmdclass={"build_ext": _build_ext_class()},
    install_requires=[_torch_requirement()],
)
