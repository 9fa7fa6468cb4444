"""Compile every recurrence kernel for a GPU architecture with no GPU, and report registers, spills and shared memory.

    python -m rnnfused._triton.compile_check [--arch 90] [--full] [--json] [--jobs N]

--arch: the compute capability as an integer (80 A100, 86/89 consumer Ampere/Ada, 90 H100/H200, 100 B200, 120 RTX
50xx); default: the present GPU's, else 90. triton.compile(ASTSource(fn, signature, constexprs),
target=GPUTarget("cuda", arch, 32)) runs the whole Triton pipeline down to a cubin; this catches what the interpreter
lets through (layouts, dot shapes and dtypes, shared memory beyond the architecture's limit). Registers and spills
come from ptxas -v on the generated PTX (the driver, which Triton reads them from at load time, needs a GPU). Must
run WITHOUT TRITON_INTERPRET=1 (tests run it in a subprocess). Exit status 1 when a kernel fails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import List, Optional

from rnnfused._cells import CELL_IDS, CELL_KINDS

# Bytes of shared memory one CTA may use (sharedMemPerBlockOptin) per compute capability.
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024, 100: 227 * 1024,
                120: 99 * 1024}
KERNELS = ("forward_step_kernel", "backward_step_kernel", "forward_persistent_kernel", "backward_persistent_kernel")
# The LayerNorm cells' per-step kernels (layer_norm_kernels.py), for LSTM and GRU; their configs are hidden sizes
# (layer_norm_launch.block_sizes derives the blocks: whole rows per program).
LAYER_NORM_KERNELS = ("layer_norm_forward_step_kernel", "layer_norm_backward_step_kernel")
LAYER_NORM_CONFIGS = {"h256": 256, "h1024": 1024}
DTYPES = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp64": "fp64"}
CONFIGS = {"small": (16, 16, 64, 4, 2), "large": (64, 32, 64, 8, 2)}  # BLOCK_B, BLOCK_H, BLOCK_K, warps, stages


@dataclass(frozen=True)
class Case:
    kernel: str
    cell: str
    dtype: str
    config: str
    proj: bool = False  # backward kernels with FROM_DR (LSTM projection, per-step path)
    resets: bool = False  # HAS_RESETS: in-sequence resets (triton_kernels/resets.py)
    zoneout: bool = False  # HAS_ZONEOUT: zoneout keep-masks (triton_kernels/zoneout.py)
    arch: int = 90


@dataclass
class Result:
    case: Case
    ok: bool
    shared: int = 0
    registers: int = -1
    spill_stores: int = -1
    spill_loads: int = -1
    cooperative: bool = False   # compiled for a cooperative launch (metadata.launch_cooperative_grid)
    spin_bounded: bool = False  # the PTX compares the barrier's poll count with the spin_limit parameter
    error: str = ""


def cases(full: bool, arch: int = 90) -> List[Case]:
    """CI: every kernel for LSTM, GRU, RNN-tanh in fp32/bf16/fp16 on the small config; the large config and float64
    (the GPU gradcheck path) for LSTM and GRU; RNN-relu in bf16; the projection variant; every kernel with resets
    for LSTM and GRU in bf16 (and the projection's backward); every kernel with zoneout for LSTM and GRU in bf16 and
    fp64 (the GPU gradcheck path), and with zoneout and resets together for LSTM. --full: every combination."""
    out = []
    for kernel in KERNELS:
        for cell in CELL_KINDS:
            for dtype in DTYPES:
                for config in CONFIGS:
                    core = cell in ("lstm", "gru")
                    wanted = full or (config == "small" and dtype != "fp64" and cell != "rnn_relu") or (
                        core and dtype == "bf16") or (core and dtype == "fp64" and config == "small") or (
                        cell == "rnn_relu" and dtype == "bf16" and config == "small")
                    if wanted:
                        out.append(Case(kernel, cell, dtype, config, arch=arch))
    out += [Case("backward_step_kernel", "lstm", d, "small", proj=True, arch=arch)
            for d in (("bf16", "fp32") if full else ("bf16",))]
    out += [Case(kernel, cell, "bf16", "small", resets=True, arch=arch) for kernel in KERNELS
            for cell in (CELL_KINDS if full else ("lstm", "gru"))]
    out += [Case("backward_step_kernel", "lstm", "bf16", "small", proj=True, resets=True, arch=arch)]
    # Zoneout: LSTM and GRU only, never with a projection (_validation.check_zoneout).
    out += [Case(kernel, cell, dtype, config, zoneout=True, resets=resets, arch=arch) for kernel in KERNELS
            for cell in ("lstm", "gru") for dtype in (DTYPES if full else ("bf16", "fp64"))
            for config in (CONFIGS if full else ("small",)) for resets in (False, True)
            if full or not resets or (cell == "lstm" and dtype == "bf16")]
    # LayerNorm kernels: every dtype at H=256 with lengths and zoneout, bf16 at H=1024, bf16 with resets.
    for kernel in LAYER_NORM_KERNELS:
        for cell in ("lstm", "gru"):
            out += [Case(kernel, cell, d, "h256", zoneout=True, arch=arch) for d in DTYPES]
            out += [Case(kernel, cell, "bf16", "h1024", zoneout=True, arch=arch),
                    Case(kernel, cell, "bf16", "h256", resets=True, zoneout=True, arch=arch)]
    return out


_LN_CELL_DTYPE_ARGS = {"c_run_ptr", "saved_ptr", "cells_ptr", "zoneout_ptr", "dh_ptr", "dc_ptr", "h0_acc_ptr",
                       "c0_acc_ptr", "c_prev_ptr", "ln_hh_acc_ptr", "b_hh_acc_ptr", "ln_c_acc_ptr"}


def _layer_norm_source(case: Case):
    """ASTSource and launch options of a LayerNorm kernel case, with the blocks the launcher would pick for
    B = 64 rows."""
    from triton.compiler import ASTSource

    from . import layer_norm_kernels
    from .layer_norm_launch import block_sizes

    fn = getattr(layer_norm_kernels, case.kernel)
    kind = CELL_KINDS[case.cell]
    meta = block_sizes(kind, 64, LAYER_NORM_CONFIGS[case.config])
    const = dict(CELL=CELL_IDS[case.cell], G=kind.gates, HAS_LENGTHS=not case.resets, HAS_RESETS=case.resets,
                 HAS_ZONEOUT=case.zoneout, BLOCK_B=meta["BLOCK_B"], BLOCK_H=meta["BLOCK_H"])
    if case.kernel.startswith("layer_norm_forward"):
        const.update(HAS_BIAS=not kind.has_cell_state, TRAIN=True)
    ptr = "*" + DTYPES[case.dtype]
    cell_ptr = "*fp64" if case.dtype == "fp64" else "*fp32"
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in const:
            signature[name] = "constexpr"
        elif name in ("t", "t_next", "T", "B", "H"):
            signature[name] = "i32"
        elif name == "lengths_ptr":
            signature[name] = "*i64"
        elif name == "starts_ptr":
            signature[name] = "*i1"
        else:
            signature[name] = cell_ptr if name in _LN_CELL_DTYPE_ARGS else ptr
        if signature[name].startswith("*") or name == "H":
            attrs[(i,)] = [["tt.divisibility", 16]]
    return ASTSource(fn, signature, constexprs=const, attrs=attrs), {"num_warps": meta["num_warps"]}


def _compile(case: Case) -> Result:
    from triton.compiler import ASTSource

    from . import persistent_kernels, step_kernels

    if case.kernel in LAYER_NORM_KERNELS:
        src, options = _layer_norm_source(case)
        return _compiled(case, src, options, [])
    fn = getattr(step_kernels, case.kernel, None) or getattr(persistent_kernels, case.kernel)
    kind = CELL_KINDS[case.cell]
    cell_id, G, S = CELL_IDS[case.cell], kind.gates, kind.saved_per_unit
    block_b, block_h, block_k, warps, stages = CONFIGS[case.config]
    ptr = "*" + DTYPES[case.dtype]
    cell_ptr = "*fp64" if case.dtype == "fp64" else "*fp32"  # c and dc are float32 for 16-bit and fp32 storage
    forward = case.kernel.startswith("forward")
    # Resets are never combined with lengths (the ops refuse it).
    const = dict(CELL=cell_id, G=G, S=S, HAS_LENGTHS=not case.resets, HAS_RESETS=case.resets,
                 HAS_ZONEOUT=case.zoneout, REVERSE=False, BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=block_k,
                 PRECISION="ieee")
    if forward:
        const.update(HAS_BIAS=True, WRITE_STATE=not case.proj)
    else:
        const.update(FROM_DR=case.proj, SPLIT=CELL_KINDS[case.cell].split_recurrent_grad)
    cell_state_args = {"c0_ptr", "cells_ptr", "grad_c_n_ptr", "dc_buf_ptr", "grad_c0_ptr", "h0_acc_ptr", "c0_acc_ptr",
                       "zoneout_ptr"}
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in const:
            signature[name] = "constexpr"
        elif name in ("s", "T", "B", "H", "K", "spin_limit"):
            signature[name] = "i32"
        elif name == "lengths_ptr":
            signature[name] = "*i64"
        elif name == "starts_ptr":
            signature[name] = "*i1"  # torch.bool
        elif name in ("barrier_ptr", "stall_ptr"):
            signature[name] = "*i32"
        else:
            signature[name] = cell_ptr if name in cell_state_args else ptr
        if signature[name].startswith("*") or name in ("H", "K"):
            # As Triton specializes at launch: torch allocations are 16-byte aligned, and H, K of the shapes that
            # matter (256, 1024, …) are multiples of 16 (B is not assumed to be: B=8 is a benchmark shape).
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn, signature, constexprs=const, attrs=attrs)
    options = {"num_warps": warps, "num_stages": stages}
    if "persistent" in case.kernel:
        from .launch_common import PERSISTENT_LAUNCH_OPTIONS  # as the launchers launch them

        options.update(PERSISTENT_LAUNCH_OPTIONS)
    runtime_args = [n for n in fn.arg_names if signature[n] != "constexpr"]
    return _compiled(case, src, options, runtime_args)


def _compiled(case: Case, src, options: dict, runtime_args: List[str]) -> Result:
    """Compiles src for the case's architecture -> its Result (registers and spills from ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget

    try:
        kernel = triton.compile(src, target=GPUTarget("cuda", case.arch, 32), options=options)
    except Exception as exc:  # a compile error is a result (reported, and failed by the test)
        return Result(case, False, error=f"{type(exc).__name__}: {str(exc)[-2000:]}")
    res = Result(case, True, shared=int(kernel.metadata.shared))
    res.registers, res.spill_stores, res.spill_loads = _ptxas_usage(kernel.asm["ptx"], case.arch)
    res.cooperative = bool(getattr(kernel.metadata, "launch_cooperative_grid", False))
    if "spin_limit" in runtime_args:
        res.spin_bounded = compares_param(kernel.asm["ptx"], case.kernel, runtime_args.index("spin_limit"))
    return res


def compares_param(ptx: str, kernel: str, index: int) -> bool:
    """True when the PTX loads kernel parameter `index` and a setp (a comparison) reads the register it went to, or
    a register copied from it: proof that the value bounds a loop rather than being dropped as dead code."""
    load = re.search(rf"ld\.param\.[bus]32\s+(%r\d+),\s*\[{re.escape(kernel)}_param_{index}\];", ptx)
    if load is None:
        return False
    regs = {load.group(1)}
    for _ in range(4):  # follow mov chains (loop-invariant copies)
        regs |= set(re.findall(rf"mov\.[bus]32\s+(%r\d+),\s*(?:{'|'.join(map(re.escape, regs))});", ptx))
    return any(re.search(rf"setp\.[a-z]+\.[bsu]32\s+%p\d+,\s*[^;]*{re.escape(r)}\b[^;]*;", ptx) for r in regs)


def _ptxas_usage(ptx: str, arch: int):
    """(registers, spill store bytes, spill load bytes) from ptxas -v on the kernel's PTX."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(arch).path
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        target = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # Triton emits the arch-specific PTX target
        proc = subprocess.run([ptxas, f"-arch={target}", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return (int(regs.group(1)) if regs else -1, int(spills.group(1)) if spills else -1,
            int(spills.group(2)) if spills else -1)


def default_arch() -> int:
    """The present GPU's compute capability as an integer (e.g. 90), else 90."""
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return major * 10 + minor
    return 90


def shared_limit(arch: int) -> int:
    """Shared memory per CTA on ``arch`` (the nearest listed architecture at or below it)."""
    known = [a for a in sorted(SHARED_LIMIT) if a <= arch]
    return SHARED_LIMIT[known[-1] if known else min(SHARED_LIMIT)]


def run(full: bool = False, jobs: int = 2, arch: Optional[int] = None) -> List[Result]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("compile_check needs compiled kernels: run it without TRITON_INTERPRET=1")
    todo = cases(full, default_arch() if arch is None else arch)
    if jobs <= 1:
        return [_compile(c) for c in todo]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_compile, todo))


def table(results: List[Result]) -> str:
    lines = [f"{'kernel':28} {'cell':8} {'dtype':5} {'config':16} {'regs':>4} {'spill st/ld':>11} {'smem B':>7}  ok"]
    for r in results:
        c = r.case
        cfg = (c.config if c.config in LAYER_NORM_CONFIGS
               else "x".join(map(str, CONFIGS[c.config][:3])) + f" w{CONFIGS[c.config][3]}")
        cfg += (" dr" if c.proj else "") + (" rs" if c.resets else "") + (" zo" if c.zoneout else "")
        lines.append(f"{c.kernel:28} {c.cell:8} {c.dtype:5} {cfg:16} {r.registers:>4} "
                     f"{f'{r.spill_stores}/{r.spill_loads}':>11} {r.shared:>7}  {'yes' if r.ok else 'NO ' + r.error[:200]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=None, help="compute capability, e.g. 90 (default: this GPU's, else 90)")
    p.add_argument("--full", action="store_true", help="every kernel × cell × dtype × config")
    p.add_argument("--json", action="store_true", help="print JSON (one object per case) instead of a table")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    results = run(args.full, args.jobs, args.arch)
    if args.json:
        print(json.dumps([dict(asdict(r.case), **{k: v for k, v in asdict(r).items() if k != "case"})
                          for r in results]))
    else:
        print(table(results))
    return 0 if all(r.ok and r.shared <= shared_limit(r.case.arch) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
