"""The CUDA backend's host code (csrc/cuda/**/*.cpp: launchers, the path rule, the graph cache, the persistent path's
ATen side, the Python bindings; the CUDA registration of csrc/sequence/layer_norm_ops.cpp) compiles against the installed torch's headers with RNNFUSED_WITH_CUDA — checked with
`g++ -fsyntax-only` on a machine without a GPU or a CUDA build of torch (CI), where the extension is built without
these files. The CUDA toolkit's headers come from /usr/local/cuda; the few headers a CPU-only torch wheel and a toolkit
without the math libraries lack are declaration-only stand-ins (tests/cuda_host_stubs/). The kernels themselves are
compiled by nvcc in test_cuda_kernels_compile.py and test_persistent_compile.py."""
import os
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils.cpp_extension import include_paths

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(__file__).resolve().parent / "cuda_host_stubs"
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
# + the LayerNorm recurrence ops: built everywhere, with a CUDA registration under RNNFUSED_WITH_CUDA
SOURCES = sorted((ROOT / "csrc" / "cuda").rglob("*.cpp")) + [ROOT / "csrc" / "module.cpp",
                                                             ROOT / "csrc" / "sequence" / "layer_norm_ops.cpp"]
CXX = shutil.which("g++") or shutil.which("c++")

pytestmark = [
    pytest.mark.skipif(CXX is None, reason="needs a C++ compiler"),
    pytest.mark.skipif(not (CUDA_INCLUDE / "cuda_runtime.h").exists(), reason=f"needs the CUDA headers ({CUDA_INCLUDE})"),
    pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch builds these files for real"),
]


def _check(source: Path):
    # C++17: the oldest standard the supported torch versions build extensions with.
    cmd = [CXX, "-std=c++17", "-fsyntax-only", "-DRNNFUSED_WITH_CUDA", f"-I{STUBS}", f"-I{CUDA_INCLUDE}",
           f"-I{sysconfig.get_paths()['include']}", f"-I{ROOT / 'csrc'}"]
    cmd += [f"-I{p}" for p in include_paths()]
    proc = subprocess.run(cmd + [str(source)], capture_output=True, text=True, timeout=900)
    return source, proc


@pytest.fixture(scope="module")
def checked():
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        return {src.relative_to(ROOT).as_posix(): proc for src, proc in pool.map(_check, SOURCES)}


def test_there_are_cuda_host_sources():
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert "csrc/cuda/ops_cuda.cpp" in names and "csrc/cuda/dispatch.cpp" in names


@pytest.mark.parametrize("source", [p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_cuda_host_source_compiles(checked, source):
    proc = checked[source]
    assert proc.returncode == 0, proc.stderr[-6000:]
