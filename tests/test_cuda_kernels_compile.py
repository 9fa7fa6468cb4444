"""The CUDA kernels (csrc/cuda/kernels/*.cu) are torch-free: each compiles with plain `nvcc -c` for sm_80 and sm_90
and no torch include path — what lets CI check them on a machine without a GPU or a CUDA build of torch."""
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "csrc" / "cuda" / "kernels"
ARCHS = ("80", "90")
FORBIDDEN_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](torch|ATen|c10|caffe2|pybind11)/', re.M)
LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def _nvcc():
    for candidate in ("/usr/local/cuda/bin/nvcc", shutil.which("nvcc")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _kernel_sources():
    return sorted(KERNELS.glob("*.cu"))


def _local_closure(path: Path, seen=None):
    """The project headers a file includes, transitively (quoted includes resolved next to the including file)."""
    seen = set() if seen is None else seen
    for name in LOCAL_INCLUDE.findall(path.read_text()):
        dep = (path.parent / name).resolve()
        if dep.exists() and dep not in seen:
            seen.add(dep)
            _local_closure(dep, seen)
    return seen


def test_there_are_kernel_sources():
    assert _kernel_sources(), f"no .cu files under {KERNELS}"


@pytest.mark.parametrize("source", _kernel_sources(), ids=lambda p: p.name)
def test_kernel_sources_include_no_torch_headers(source):
    for path in [source, *_local_closure(source)]:
        bad = FORBIDDEN_INCLUDE.findall(path.read_text())
        assert not bad, f"{path.relative_to(ROOT)} includes {bad} headers; kernel files must stay torch-free"


@pytest.mark.skipif(_nvcc() is None, reason="needs nvcc (/usr/local/cuda/bin/nvcc or on PATH)")
def test_every_kernel_compiles_with_plain_nvcc_for_sm80_and_sm90():
    nvcc = _nvcc()
    # persistent_*.cu: compiled once, with stricter checks (spills, SASS), by tests/test_persistent_compile.py.
    sources = [src for src in _kernel_sources() if not src.name.startswith("persistent_")]
    jobs = [(src, arch) for src in sources for arch in ARCHS]
    with tempfile.TemporaryDirectory() as tmp:
        def compile_one(job):
            src, arch = job
            cmd = [nvcc, "-std=c++17", "-O3", f"-I{ROOT / 'csrc'}", "-gencode", f"arch=compute_{arch},code=sm_{arch}",
                   "-c", str(src), "-o", os.path.join(tmp, f"{src.stem}.sm{arch}.o")]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            return src.name, arch, proc.returncode, proc.stderr[-3000:]

        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            results = list(pool.map(compile_one, jobs))
    failures = [f"{name} sm_{arch}: exit {rc}\n{err}" for name, arch, rc, err in results if rc != 0]
    assert not failures, "\n\n".join(failures)
