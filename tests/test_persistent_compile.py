"""The persistent kernels compile torch-free with plain nvcc for sm_80 and sm_90, with PyTorch's half/bfloat16 macros,
and the result is what the design needs: no local memory (no spills, no stack: no LDL/STL in the step loop) for any
instantiation, and, where a disassembler is available (cuobjdump from CUDA or Triton), tensor-core HMMA instructions
of the right type, asynchronous L2 copies (LDGSTS) and acquire/release flag accesses in the SASS.
Skipped without nvcc."""
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "kernels", "persistent_*.cu")))
ARCHS = ("80", "90")
# What torch.utils.cpp_extension passes to nvcc: the kernels must not rely on implicit half/bfloat16 conversions.
TORCH_MACROS = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
                "-D__CUDA_NO_HALF2_OPERATORS__"]


def _nvcc():
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    path = os.path.join(home, "bin", "nvcc")
    return path if os.path.exists(path) else shutil.which("nvcc")


def _cuobjdump():
    found = shutil.which("cuobjdump")
    if found:
        return found
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    if os.path.exists(os.path.join(home, "bin", "cuobjdump")):
        return os.path.join(home, "bin", "cuobjdump")
    try:  # Triton wheels ship one
        import triton

        path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        return path if os.path.exists(path) else None
    except ImportError:
        return None


NVCC = _nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs nvcc (CUDA toolkit)")


def _compile(src, out_dir):
    obj = os.path.join(out_dir, os.path.basename(src) + ".o")
    cmd = [NVCC, "-std=c++17", "-O3", "-I", os.path.join(ROOT, "csrc"), *TORCH_MACROS, "-Xptxas", "-v", "-c", src,
           "-o", obj]
    for arch in ARCHS:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return src, obj, res


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("persistent_kernels"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: _compile(s, out), KERNELS))
    return {os.path.basename(src): (obj, res) for src, obj, res in results}


def _kernel_reports(ptxas_log):
    """[(arch, kernel, registers, stack, spill_stores, spill_loads)] from nvcc -Xptxas -v output."""
    reports, current = [], None
    for line in ptxas_log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            current = [m.group(2), m.group(1), None, None, None, None]
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            current[3:6] = [int(v) for v in m.groups()]
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            current[2] = int(m.group(1))
            reports.append(tuple(current))
            current = None
    return reports


def test_kernel_files_exist():
    names = {os.path.basename(k) for k in KERNELS}
    assert {"persistent_lstm.cu", "persistent_gru.cu", "persistent_rnn.cu"} <= names


@pytest.mark.parametrize("name", [os.path.basename(k) for k in KERNELS])
def test_compiles_without_local_memory(compiled, name):
    obj, res = compiled[name]
    assert res.returncode == 0, res.stderr[-6000:]
    reports = _kernel_reports(res.stderr)
    cells = 2 if name == "persistent_rnn.cu" else 1
    # forward + backward x {bf16, fp16, tf32, fp32 FMA, fp64 FMA} per cell, for each architecture
    assert len(reports) == 10 * cells * len(ARCHS), res.stderr[-3000:]
    for arch, kernel, regs, stack, spill_st, spill_ld in reports:
        assert (stack, spill_st, spill_ld) == (0, 0, 0), f"sm_{arch} {kernel}: local memory"
        assert regs <= 255, f"sm_{arch} {kernel}: {regs} registers"


SASS_EXPECT = {  # epilogue/engine type in the mangled name -> tensor-core instruction it must contain
    "Bf16Op": "HMMA.16816.F32.BF16",
    "F16Op": "HMMA.16816.F32",
    "Tf32Op": "HMMA.1688.F32.TF32",
}


@pytest.mark.parametrize("name", [os.path.basename(k) for k in KERNELS])
def test_sass_has_tensor_cores_and_no_local_memory(compiled, name):
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (CUDA toolkit or Triton) to disassemble with")
    obj, res = compiled[name]
    assert res.returncode == 0
    sass = subprocess.run([tool, "--dump-sass", obj], capture_output=True, text=True, check=True).stdout
    functions = re.split(r"\n\s*Function : ", sass)[1:]
    assert functions, "no functions in the SASS dump"
    for body in functions:
        kernel = body.split("\n", 1)[0]
        ops = re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", body)
        assert not [o for o in ops if o.startswith(("LDL", "STL"))], f"{kernel}: local memory access"
        assert any(o.startswith("LDGSTS") for o in ops), f"{kernel}: no cp.async staging"
        assert "LDG.E.STRONG.GPU" in ops and "STG.E.STRONG.GPU" in ops, f"{kernel}: no acquire/release flags"
        for engine, instr in SASS_EXPECT.items():
            if engine in kernel:
                assert instr in ops, f"{kernel}: expected {instr}"
        if "FmaMma" in kernel:
            assert not [o for o in ops if o.startswith("HMMA")], f"{kernel}: FMA engine uses tensor cores"
