"""Times the Triton backend's two recurrence paths next to cuDNN (and the cuda backend when it is built).

    python benchmarks/triton_bench.py [--csv out.csv] [--T 512] [--reps 20] [--cells lstm gru] [--dtype bf16]

Full layer-direction (input GEMM included), forward alone and forward+backward (random upstream gradients on
output, h_n, c_n), time-major [T, B, H] input with I = H, bias on. CUDA events around each call, median and
p20/p80 of `reps` timed calls after warm-up (the warm-up also compiles and autotunes the Triton kernels).
Needs a CUDA GPU; also importable: `run(...)` returns the rows, for the benchmark suite.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from typing import Callable, Dict, List

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _time_ms(fn: Callable[[], None], reps: int, warmup: int = 3) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return {"median": statistics.median(times), "p20": q[1], "p80": q[7]}


def _cudnn_runner(cell: str, layer: torch.nn.Module, x, hx, upstream, backward: bool):
    def run():
        out, state = layer(x, hx)
        if backward:
            outs = (out, *state) if cell == "lstm" else (out, state)
            torch.autograd.backward(outs, upstream)
    return run


def _rnnfused_runner(cell: str, backend: str, path: str, layer: torch.nn.Module, x, hx, upstream, backward: bool):
    """hx: cuDNN's initial state(s) [1, B, H]; the functional API takes [B, H]."""
    from rnnfused import functional as F

    w = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]

    def run():
        if path:
            os.environ["RNNFUSED_TRITON_PATH"] = path
        if cell == "lstm":
            out, (h, c) = F.lstm(x, (hx[0][0], hx[1][0]), *w, backend=backend)
            outs = (out, h.unsqueeze(0), c.unsqueeze(0))
        else:
            out, h = F.gru(x, hx[0][0], *w, backend=backend)
            outs = (out, h.unsqueeze(0))
        if backward:
            torch.autograd.backward(outs, upstream)
    return run


def run(cells=("lstm", "gru"), dtype=torch.bfloat16, batches=(8, 64), hiddens=(256, 1024), T: int = 512,
        reps: int = 20) -> List[dict]:
    import rnnfused

    impls = [("cudnn", None, None), ("triton-step", "triton", "step"), ("triton-persistent", "triton", "persistent")]
    if rnnfused.cuda_built():
        impls.append(("cuda", "cuda", None))
    rows = []
    for cell in cells:
        for B in batches:
            for H in hiddens:
                torch.manual_seed(0)
                cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
                layer = cls(H, H).to("cuda", dtype)
                layer.flatten_parameters()
                x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=True)
                h0 = torch.zeros(1, B, H, device="cuda", dtype=dtype, requires_grad=True)
                hx = (h0, torch.zeros_like(h0, requires_grad=True)) if cell == "lstm" else h0
                upstream = [torch.randn(T, B, H, device="cuda", dtype=dtype)] + [
                    torch.randn(1, B, H, device="cuda", dtype=dtype) for _ in range(2 if cell == "lstm" else 1)]
                base = {}
                for name, backend, path in impls:
                    for mode, backward in (("fwd", False), ("fwd+bwd", True)):
                        if backend is None:
                            fn = _cudnn_runner(cell, layer, x, hx, upstream, backward)
                        else:
                            fn = _rnnfused_runner(cell, backend, path, layer, x, hx if cell == "lstm" else (h0,),
                                                  upstream, backward)
                        try:
                            t = _time_ms(fn, reps)
                        except Exception as exc:  # report and go on: one failing path must not hide the others
                            print(f"[{cell} B={B} H={H} {name} {mode}] failed: {type(exc).__name__}: {exc}",
                                  file=sys.stderr)
                            continue
                        if name == "cudnn":
                            base[mode] = t["median"]
                        rows.append(dict(cell=cell, dtype=str(dtype).replace("torch.", ""), B=B, H=H, T=T, impl=name,
                                         mode=mode, **t, speedup_vs_cudnn=base.get(mode, float("nan")) / t["median"]))
                        print(f"{cell:5} B={B:<3} H={H:<5} {name:18} {mode:8} median {t['median']:8.3f} ms "
                              f"(p20 {t['p20']:.3f}, p80 {t['p80']:.3f})  x{rows[-1]['speedup_vs_cudnn']:.2f} vs cuDNN",
                              flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--batches", nargs="+", type=int, default=[8, 64])
    p.add_argument("--hiddens", nargs="+", type=int, default=[256, 1024])
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--csv", help="write the rows to this CSV file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    print(f"# {torch.cuda.get_device_name()}  torch {torch.__version__}  cuDNN {torch.backends.cudnn.version()}  "
          f"triton {__import__('triton').__version__}")
    rows = run(args.cells, DTYPES[args.dtype], args.batches, args.hiddens, args.T, args.reps)
    if args.csv and rows:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
