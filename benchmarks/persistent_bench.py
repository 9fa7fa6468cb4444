"""Times the persistent CUDA kernels against cuDNN: one layer-direction, full layer (input GEMM included), forward
and forward+backward, CUDA events, warm-up, median and p20/p80, written to CSV with the device and versions.

    python benchmarks/persistent_bench.py                         # the issue's table (below), CSV to bench_out/
    python benchmarks/persistent_bench.py --case lstm,bf16,16,1024,512 --case gru,fp16,64,256,512
    python benchmarks/persistent_bench.py --grid --steps 256       # cell x dtype x B x H sweep (tuning)

The persistent path is called through its debug ops (torch.ops.rnnfused._persistent_forward / _backward, registered
by csrc/cuda/persistent/persistent_ops.cpp), independent of the cuda backend's automatic dispatch. Its forward saves
what backward needs, so cuDNN's forward is timed in training mode too (inputs and weights require grad); cuDNN's
inference forward (no_grad) is reported alongside. float32 runs TF32 tensor cores on both sides
(torch.backends.cuda.matmul.allow_tf32 for rnnfused, torch.backends.cudnn.allow_tf32 for cuDNN, both set here).
Input size defaults to the hidden size. Peak memory is the CUDA allocator's peak during the timed fwd+bwd loop.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import sys

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
# The issue's benchmark table: (cell, dtype, B, H, T) with cuDNN's measured times and the targets.
ISSUE_CASES = [("lstm", "fp16", 16, 768, 1024), ("lstm", "bf16", 8, 1024, 512), ("gru", "bf16", 16, 768, 1024),
               ("lstm", "fp32", 64, 512, 512)]
GRID = dict(cell=("lstm", "gru"), dtype=("fp32", "bf16", "fp16"), B=(1, 8, 16, 64, 128, 512),
            H=(64, 256, 768, 1024, 2048))
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def quantiles(ms):
    s = sorted(ms)
    pick = lambda q: s[min(len(s) - 1, int(round(q * (len(s) - 1))))]  # noqa: E731
    return statistics.median(s), pick(0.2), pick(0.8)


def time_ms(fn, warmup, iters):
    """Per-call milliseconds (CUDA events around each call) after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return quantiles(times)


class Layer:
    """Random weights and inputs of one layer-direction, shared by cuDNN and the persistent kernels."""

    def __init__(self, cell, dtype, B, H, T, I, seed=0):
        torch.manual_seed(seed)
        self.cell, self.T = cell, T
        mod_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
        kw = {"nonlinearity": cell.split("_")[1]} if mod_cls is torch.nn.RNN else {}
        self.module = mod_cls(I, H, **kw).to(device="cuda", dtype=dtype)
        self.module.flatten_parameters()
        self.x = torch.randn(T, B, I, device="cuda", dtype=dtype, requires_grad=True)
        self.h0 = torch.zeros(B, H, device="cuda", dtype=dtype, requires_grad=True)
        self.c0 = torch.zeros(B, H, device="cuda", dtype=dtype, requires_grad=True) if cell == "lstm" else None
        self.grad_out = torch.randn(T, B, H, device="cuda", dtype=dtype)
        self.grad_h = torch.randn(B, H, device="cuda", dtype=dtype)
        self.w = [p.detach() for p in (self.module.weight_ih_l0, self.module.weight_hh_l0, self.module.bias_ih_l0,
                                       self.module.bias_hh_l0)]

    # --- cuDNN
    def cudnn_forward(self):
        hx = (self.h0[None], self.c0[None]) if self.c0 is not None else self.h0[None]
        return self.module(self.x, hx)

    def cudnn_forward_backward(self):
        out, state = self.cudnn_forward()
        h_n = state[0] if self.c0 is not None else state
        grads = [self.grad_out, self.grad_h[None]]
        outs = [out, h_n]
        if self.c0 is not None:
            outs.append(state[1])
            grads.append(self.grad_h[None])
        torch.autograd.backward(outs, grads)

    # --- persistent
    def persistent_forward(self):
        w_ih, w_hh, b_ih, b_hh = self.w
        return torch.ops.rnnfused._persistent_forward(self.cell, self.x.detach(), self.h0.detach(),
                                                      None if self.c0 is None else self.c0.detach(), w_ih, w_hh, b_ih,
                                                      b_hh, None, False)

    def persistent_forward_backward(self):
        out, h_n, c_n, saved, cells = self.persistent_forward()
        w_ih, w_hh, _, _ = self.w
        c0 = None if self.c0 is None else self.c0.detach()
        return torch.ops.rnnfused._persistent_backward(self.cell, self.grad_out, self.grad_h,
                                                       None if c0 is None else self.grad_h, self.x.detach(),
                                                       self.h0.detach(), c0, w_ih, w_hh, None, False, out, saved,
                                                       cells)

    def max_output_difference(self):
        with torch.no_grad():
            ref = self.cudnn_forward()[0]
            got = self.persistent_forward()[0]
        return float((ref.float() - got.float()).abs().max())


def run_case(cell, dtype_name, B, H, T, I, warmup, iters):
    dtype = DTYPES[dtype_name]
    plan = torch.ops.rnnfused._persistent_plan(cell, B, H, dtype)
    row = dict(cell=cell, dtype=dtype_name, B=B, H=H, T=T, I=I, plan=plan.replace("\n", " | "))
    layer = Layer(cell, dtype, B, H, T, I)
    with torch.no_grad():
        row["cudnn_infer_fwd_ms"] = time_ms(layer.cudnn_forward, warmup, iters)[0]
    row["cudnn_fwd_ms"], row["cudnn_fwd_p20"], row["cudnn_fwd_p80"] = time_ms(layer.cudnn_forward, warmup, iters)
    torch.cuda.reset_peak_memory_stats()
    row["cudnn_fwdbwd_ms"], row["cudnn_fwdbwd_p20"], row["cudnn_fwdbwd_p80"] = time_ms(
        layer.cudnn_forward_backward, warmup, iters)
    row["cudnn_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    try:
        row["max_abs_diff_vs_cudnn"] = layer.max_output_difference()
        row["ours_fwd_ms"], row["ours_fwd_p20"], row["ours_fwd_p80"] = time_ms(layer.persistent_forward, warmup, iters)
        torch.cuda.reset_peak_memory_stats()
        row["ours_fwdbwd_ms"], row["ours_fwdbwd_p20"], row["ours_fwdbwd_p80"] = time_ms(
            layer.persistent_forward_backward, warmup, iters)
        row["ours_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["ours_fwd_us_per_step"] = 1000 * row["ours_fwd_ms"] / T
        row["speedup_fwd"] = row["cudnn_fwd_ms"] / row["ours_fwd_ms"]
        row["speedup_fwdbwd"] = row["cudnn_fwdbwd_ms"] / row["ours_fwdbwd_ms"]
    except RuntimeError as exc:  # does not fit: record why, keep going
        row["error"] = str(exc).splitlines()[0]
    row["cudnn_fwd_us_per_step"] = 1000 * row["cudnn_fwd_ms"] / T
    return row


def environment():
    props = torch.cuda.get_device_properties(0)
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                device=props.name, sms=props.multi_processor_count, torch=torch.__version__,
                cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
                command=" ".join([os.path.basename(sys.executable)] + sys.argv))


def parse_case(text):
    cell, dtype, B, H, T = text.split(",")
    if cell not in GATES or dtype not in DTYPES:
        raise argparse.ArgumentTypeError(f"--case cell,dtype,B,H,T with cell in {list(GATES)} and dtype in "
                                         f"{list(DTYPES)}, got {text!r}")
    return cell, dtype, int(B), int(H), int(T)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", type=parse_case, help="cell,dtype,B,H,T (repeatable)")
    parser.add_argument("--grid", action="store_true", help="sweep cell x dtype x B x H at --steps")
    parser.add_argument("--steps", type=int, default=256, help="T for --grid")
    parser.add_argument("--input-size", type=int, default=0, help="I (default: H)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--csv", default=os.path.join("bench_out", "persistent_bench.csv"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("persistent_bench: needs a CUDA GPU")
    import rnnfused  # noqa: F401  (loads the extension and its ops)

    try:
        torch.ops.rnnfused._persistent_forward.default
    except (AttributeError, RuntimeError):
        sys.exit("persistent_bench: rnnfused._C was built without the persistent CUDA kernels")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    cases = args.case or []
    if args.grid:
        cases += [(c, d, B, H, args.steps) for c in GRID["cell"] for d in GRID["dtype"] for B in GRID["B"]
                  for H in GRID["H"]]
    if not cases:
        cases = ISSUE_CASES
    env = environment()
    print(f"# {env['device']} ({env['sms']} SMs), torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    header = f"{'case':28s} {'cuDNN fwd':>10s} {'ours fwd':>9s} {'us/step':>8s} {'x':>5s} " \
             f"{'cuDNN f+b':>10s} {'ours f+b':>9s} {'x':>5s}"
    print(header)
    rows = []
    for cell, dtype, B, H, T in cases:
        row = run_case(cell, dtype, B, H, T, args.input_size or H, args.warmup, args.iters)
        row.update(env)
        rows.append(row)
        name = f"{cell} {dtype} B={B} H={H} T={T}"
        if "error" in row:
            print(f"{name:28s} {row['cudnn_fwd_ms']:10.3f} {'-':>9s}  does not fit: {row['error'][:60]}")
        else:
            print(f"{name:28s} {row['cudnn_fwd_ms']:10.3f} {row['ours_fwd_ms']:9.3f} "
                  f"{row['ours_fwd_us_per_step']:8.2f} {row['speedup_fwd']:5.2f} {row['cudnn_fwdbwd_ms']:10.3f} "
                  f"{row['ours_fwdbwd_ms']:9.3f} {row['speedup_fwdbwd']:5.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    fields = sorted({k for r in rows for k in r})
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"# wrote {args.csv}")


if __name__ == "__main__":
    main()
