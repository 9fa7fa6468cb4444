"""The persistent kernels compile torch-free with plain nvcc, with PyTorch's half/bfloat16 macros, and the result is
what the design needs, for every synchronisation variant (csrc/cuda/kernels/persistent_tuning.h):

- sm_90 (the H100/H200 the variants are tuned on): every translation unit with all variants; sm_80: the baseline
  variant only (RNNFUSED_PERSISTENT_VARIANTS=0 keeps this check's compile time small, see DESIGN.md);
- no local memory (no spills, no stack: no LDL/STL) and at most 255 registers for any instantiation;
- where a disassembler is available (cuobjdump from CUDA or Triton), in the SASS: tensor-core HMMA of the right type;
  no trap (a stalled wait abandons the launch instead); the watchdog's abort-word claim and system-scope
  fence; and each variant's synchronisation: acquire polls + release flags and a cp.async pipeline (baseline,
  store_first, padded), relaxed polls with __nanosleep and one fence (poll_warp), 8-byte relaxed tagged loads and
  stores and no flags or cp.async (ll).

Every file is compiled once per test session (module fixture, two at a time). Skipped without nvcc.
"""
import collections
import concurrent.futures
import glob
import os
import re
import shutil
import subprocess

import pytest

from rnnfused._cells import CELL_IDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "kernels", "persistent_*.cu")))
CELLS = tuple(CELL_IDS)  # every file instantiates every registered cell
TYPES = ("bf16", "fp16", "fp32", "fp64")  # one file per direction and storage type
# (arch, extra flags): all variants for sm_90, the baseline for sm_80.
BUILDS = (("90", []), ("80", ["-DRNNFUSED_PERSISTENT_VARIANTS=0"]))
VARIANTS = ("baseline", "store_first", "padded", "poll_warp", "ll")  # the Variant enum's order
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


def _compile(src, arch, flags, out_dir):
    obj = os.path.join(out_dir, f"{os.path.basename(src)}.sm{arch}.o")
    cmd = [NVCC, "-std=c++17", "-O3", "-I", os.path.join(ROOT, "csrc"), *TORCH_MACROS, *flags, "-Xptxas", "-v", "-c",
           src, "-o", obj, "-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return obj, subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{(file name, arch): (object, CompletedProcess)}: every kernel file, once per session."""
    out = str(tmp_path_factory.mktemp("persistent_kernels"))
    jobs = [(src, arch, flags) for arch, flags in BUILDS for src in KERNELS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _compile(*job, out), jobs))
    return {(os.path.basename(src), arch): res for (src, arch, _), res in zip(jobs, results)}


def _kernel_reports(ptxas_log):
    """[(arch, kernel, registers, stack, spill_stores, spill_loads)] from nvcc -Xptxas -v output (kernels only)."""
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


def _variant_of(mangled):
    """The Variant template argument of a mangled kernel name (…LNS0_7VariantE<n>E…)."""
    m = re.search(r"7VariantE(\d)E", mangled)
    return VARIANTS[int(m.group(1))] if m else None


def _ids():
    return [f"{os.path.basename(k)}-sm{arch}" for arch, _ in BUILDS for k in KERNELS]


def _keys():
    return [(os.path.basename(k), arch) for arch, _ in BUILDS for k in KERNELS]


def test_one_file_per_direction_and_type():
    names = {os.path.basename(k) for k in KERNELS}
    assert names == {f"persistent_{d}_{t}.cu" for d in ("fwd", "bwd") for t in TYPES}


def _expected_kernels(name, arch):
    """{variant: kernels} a file must hold: per cell, bf16/fp16 one tensor-core engine, fp32 the TF32 engine and the
    FMA one, fp64 the FMA one; every variant on sm_90 for the tensor-core engines, the baseline otherwise."""
    n = len(CELLS)
    dtype = name.rsplit("_", 1)[1].split(".")[0]
    tensor_core = 0 if dtype == "fp64" else n
    fma = n if dtype in ("fp32", "fp64") else 0
    expected = {"baseline": tensor_core + fma}
    if arch == "90" and tensor_core:
        expected.update({v: tensor_core for v in VARIANTS[1:]})
    return expected


@pytest.mark.parametrize("key", _keys(), ids=_ids())
def test_compiles_without_local_memory(compiled, key):
    name, arch = key
    obj, res = compiled[key]
    assert res.returncode == 0, res.stderr[-6000:]
    reports = _kernel_reports(res.stderr)
    per_variant = collections.Counter(_variant_of(kernel) for _, kernel, *_ in reports)
    assert per_variant == _expected_kernels(name, arch), per_variant
    for a, kernel, regs, stack, spill_st, spill_ld in reports:
        assert (stack, spill_st, spill_ld) == (0, 0, 0), f"sm_{a} {kernel}: local memory"
        assert regs <= 255, f"sm_{a} {kernel}: {regs} registers"


SASS_EXPECT = {  # epilogue/engine type in the mangled name -> tensor-core instruction it must contain
    "Bf16Op": "HMMA.16816.F32.BF16",
    "F16Op": "HMMA.16816.F32",
    "Tf32Op": "HMMA.1688.F32.TF32",
}
# Mangled engine names: Mma16816Op<__nv_bfloat16> / <__half>, Tf32Op, FmaMma<float|double>.
ENGINE_OF = {"Mma16816OpI13__nv_bfloat16": "Bf16Op", "Mma16816OpI6__half": "F16Op", "6Tf32Op": "Tf32Op"}


def _sass_functions(obj):
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (CUDA toolkit or Triton) to disassemble with")
    sass = subprocess.run([tool, "--dump-sass", obj], capture_output=True, text=True, check=True).stdout
    functions = re.split(r"\n\s*Function : ", sass)[1:]
    assert functions, "no functions in the SASS dump"
    out = []
    for body in functions:
        kernel = body.split("\n", 1)[0].strip()
        ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", body)
        out.append((kernel, collections.Counter(ops)))
    return out


@pytest.mark.parametrize("key", _keys(), ids=_ids())
def test_sass_has_tensor_cores_the_variant_protocols_and_no_trap(compiled, key):
    obj, res = compiled[key]
    assert res.returncode == 0
    functions = _sass_functions(obj)
    # L1 invalidations of the baseline kernel of each engine/direction: poll_warp's relaxed polls must have fewer.
    baseline_cctl = {_engine_key(k): ops["CCTL.IVALL"] for k, ops in functions if _variant_of(k) == "baseline"}
    for kernel, ops in functions:
        variant = _variant_of(kernel)
        assert not [o for o in ops if o.startswith(("LDL", "STL"))], f"{kernel}: local memory access"
        assert not [o for o in ops if o.startswith("BPT")], f"{kernel}: a trap (the watchdog must abandon instead)"
        # Watchdog: claims the launch's abort word, fences the host-visible record at system scope.
        assert any(o.startswith(("ATOM.E.CAS", "ATOMG.E.CAS")) for o in ops), f"{kernel}: no abort-word claim"
        assert ops["MEMBAR.SC.SYS"] >= 1, f"{kernel}: no system-scope fence for the stall record"
        if variant == "ll":
            assert ops["LDG.E.64.STRONG.GPU"] and ops["STG.E.64.STRONG.GPU"], f"{kernel}: no tagged 8-byte words"
            assert not [o for o in ops if o.startswith("LDGSTS")], f"{kernel}: ll reads v with tagged loads"
            assert ops["STG.E.STRONG.GPU"] == 0 and ops["MEMBAR.ALL.GPU"] == 0, f"{kernel}: ll has no flag release"
        else:
            assert any(o.startswith("LDGSTS") for o in ops), f"{kernel}: no cp.async staging"
            assert ops["LDG.E.STRONG.GPU"] and ops["STG.E.STRONG.GPU"], f"{kernel}: no flag poll / release"
            assert ops["MEMBAR.ALL.GPU"] >= 1, f"{kernel}: the release"
        if variant == "poll_warp":
            # Relaxed polls with backoff, one acquire fence after success: no L1 invalidation per poll.
            assert ops["NANOSLEEP"] >= 1, f"{kernel}: no backoff"
            assert ops["CCTL.IVALL"] < baseline_cctl[_engine_key(kernel)], f"{kernel}: acquire polls"
        elif variant is not None:
            assert ops["NANOSLEEP"] == 0, f"{kernel}: only poll_warp backs off"
        for mangled, engine in ENGINE_OF.items():
            if mangled in kernel:
                assert SASS_EXPECT[engine] in ops, f"{kernel}: expected {SASS_EXPECT[engine]}"
        if "FmaMma" in kernel:
            assert not [o for o in ops if o.startswith("HMMA")], f"{kernel}: FMA engine uses tensor cores"


def _engine_key(kernel):
    """The kernel's name without its Variant argument (epilogue, cell and engine)."""
    return re.sub(r"7VariantE\dE", "", kernel)


def test_register_table_per_variant(compiled, capsys):
    """Prints registers per (direction, engine, variant) for sm_90 (the report's table); fails only on a failed
    compile, which the other tests name."""
    table = collections.defaultdict(set)
    for (name, arch), (obj, res) in compiled.items():
        if arch != "90" or res.returncode != 0:
            continue
        for _, kernel, regs, *_ in _kernel_reports(res.stderr):
            direction = "fwd" if "ForwardEpilogue" in kernel else "bwd"
            engine = next((e for m, e in ENGINE_OF.items() if m in kernel), "fp64" if "FmaMmaIdE" in kernel else "fp32")
            table[(direction, engine, _variant_of(kernel))].add(regs)
    assert table
    with capsys.disabled():
        print("\nregisters per thread, sm_90 (min-max over the 4 cells):")
        for key in sorted(table, key=str):
            print(f"  {key[0]} {key[1]:7s} {key[2]:12s} {min(table[key])}-{max(table[key])}")
