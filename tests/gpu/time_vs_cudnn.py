"""Times one layer of the cuda backend's step-wise path against cuDNN (nn.LSTM/nn.GRU, flatten_parameters).

    python tests/gpu/time_vs_cudnn.py [--out DIR] [--reps 10] [--warmup 3]

Grid: LSTM, GRU × bfloat16, float32 × B ∈ {8, 64} × H ∈ {256, 1024}, T = 512, input size = H, one direction.
Same work for both: the full layer (input GEMM included), "fwd" = the training forward (inputs and weights require
grad), "fwd+bwd" = that forward plus the gradients of input and all weights for a fixed random upstream gradient.
Ours runs twice: plain stream launches, and with RNNFUSED_CUDA_GRAPHS=1 (graph replay, warmed up first).
CUDA events, median (and p20/p80) of --reps runs after --warmup. Prints a table; writes cuda_stepwise_timing.csv to
--out (default $OUT or the current directory). Timing only; nothing here passes or fails.
"""
import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

import rnnfused
from rnnfused import functional as RF

T = 512


def quantiles(xs):
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]  # noqa: E731
    return statistics.median(xs), pick(0.2), pick(0.8)


def time_ms(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return quantiles(times)


def make_case(cell, dtype, B, H):
    torch.manual_seed(0)
    mod = (nn.LSTM if cell == "lstm" else nn.GRU)(H, H).to(device="cuda", dtype=dtype)
    mod.flatten_parameters()
    x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=True)
    upstream = torch.randn(T, B, H, device="cuda", dtype=dtype)
    params = [mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0]

    def cudnn_fwd():
        return mod(x)[0]

    def ours_fwd():
        if cell == "lstm":
            return RF.lstm(x, None, *params, backend="cuda")[0]
        return RF.gru(x, None, *params, backend="cuda")[0]

    def with_backward(fwd):
        return lambda: torch.autograd.grad(fwd(), [x] + params, upstream)

    return {"cudnn": (cudnn_fwd, with_backward(cudnn_fwd)), "ours": (ours_fwd, with_backward(ours_fwd))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    props = torch.cuda.get_device_properties(0)
    header = (f"# {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"cuDNN {torch.backends.cudnn.version()}, T={T}, I=H, reps={args.reps}, warmup={args.warmup}")
    print(header, flush=True)
    rows = []
    for cell in ("lstm", "gru"):
        for dtype in (torch.bfloat16, torch.float32):
            for B in (8, 64):
                for H in (256, 1024):
                    fns = make_case(cell, dtype, B, H)
                    row = {"cell": cell, "dtype": str(dtype).replace("torch.", ""), "B": B, "H": H, "T": T}
                    for impl, graphs in (("cudnn", None), ("ours", "0"), ("ours_graphs", "1")):
                        os.environ["RNNFUSED_CUDA_GRAPHS"] = graphs or "0"
                        fwd, fwd_bwd = fns["cudnn" if impl == "cudnn" else "ours"]
                        for mode, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
                            med, p20, p80 = time_ms(fn, args.reps, args.warmup)
                            row[f"{impl}_{mode}_ms"] = round(med, 4)
                            row[f"{impl}_{mode}_p20_ms"] = round(p20, 4)
                            row[f"{impl}_{mode}_p80_ms"] = round(p80, 4)
                    rnnfused.clear_cuda_graphs()
                    rows.append(row)
                    print(f"{cell:4s} {row['dtype']:8s} B={B:3d} H={H:4d} | fwd ms: cuDNN {row['cudnn_fwd_ms']:8.3f} "
                          f"ours {row['ours_fwd_ms']:8.3f} graphs {row['ours_graphs_fwd_ms']:8.3f} | fwd+bwd ms: "
                          f"cuDNN {row['cudnn_fwd_bwd_ms']:8.3f} ours {row['ours_fwd_bwd_ms']:8.3f} graphs "
                          f"{row['ours_graphs_fwd_bwd_ms']:8.3f}", flush=True)
    os.environ.pop("RNNFUSED_CUDA_GRAPHS", None)

    print("\n| cell | dtype | B | H | cuDNN fwd | ours fwd | ours+graphs fwd | cuDNN fwd+bwd | ours fwd+bwd | "
          "ours+graphs fwd+bwd | best speedup fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        best = min(r["ours_fwd_bwd_ms"], r["ours_graphs_fwd_bwd_ms"])
        print(f"| {r['cell']} | {r['dtype']} | {r['B']} | {r['H']} | {r['cudnn_fwd_ms']:.2f} | {r['ours_fwd_ms']:.2f} | "
              f"{r['ours_graphs_fwd_ms']:.2f} | {r['cudnn_fwd_bwd_ms']:.2f} | {r['ours_fwd_bwd_ms']:.2f} | "
              f"{r['ours_graphs_fwd_bwd_ms']:.2f} | {r['cudnn_fwd_bwd_ms'] / best:.2f}x |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cuda_stepwise_timing.csv", "w", newline="") as f:
        f.write(header + "\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out / 'cuda_stepwise_timing.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
