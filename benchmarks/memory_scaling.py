"""Peak host memory of a fused layer's forward+backward vs sequence length.

    python benchmarks/memory_scaling.py --steps 1000 10000 100000 --hidden 32 --batch 8

Each length runs in a fresh subprocess; the peak resident set size (ru_maxrss) minus the same process's RSS right
before the measured step is reported, together with the bytes autograd keeps for backward.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _measure(cell: str, steps: int, batch: int, hidden: int, backend: str) -> dict:
    import torch

    import rnnfused
    from rnnfused._cells import cell_kind

    cls = getattr(rnnfused, cell_kind(cell).module)   # lstm, gru, rnn (tanh), rnn_relu, ...
    torch.manual_seed(0)
    m = cls(hidden, hidden, backend=backend)
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    m(x[:2])[0].sum().backward()  # load kernels, allocate thread pools
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = m(x)
    out.sum().backward()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"cell": cell, "steps": steps, "batch": batch, "hidden": hidden, "backend": backend,
            "saved_mb": saved / 2**20, "peak_rss_growth_mb": (peak_kb - base_kb) / 1024,
            "input_mb": x.numel() * 4 / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_measure(args.child[0], int(args.child[1]), args.batch, args.hidden, args.backend)))
        return
    print(f"{'cell':5s} {'T':>7s} {'saved MB':>9s} {'peak RSS growth MB':>19s} {'MB/kstep':>9s}")
    for cell in args.cells:
        for steps in args.steps:
            out = subprocess.run([sys.executable, __file__, "--child", cell, str(steps), "--batch", str(args.batch),
                                  "--hidden", str(args.hidden), "--backend", args.backend],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{cell:5s} {steps:7d} {r['saved_mb']:9.1f} {r['peak_rss_growth_mb']:19.1f} "
                  f"{1000 * r['peak_rss_growth_mb'] / steps:9.2f}")


if __name__ == "__main__":
    main()
