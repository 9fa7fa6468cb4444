"""``python -m benchmarks``: rnnfused's layers vs cuDNN (or PyTorch's CPU nn.* without a GPU).

    python -m benchmarks --quick                      # a few configs, < 1 min on a CPU
    python -m benchmarks                              # the default grid (incl. packed variable-length input)
    python -m benchmarks --full                       # sweeps + headline configs (GPU: < 10 min on an H100)
    python -m benchmarks --preset NAME                # any preset of benchmarks/presets.py
    python -m benchmarks --cells lstm --dtypes bf16 --batch 8,64 --hidden 256,1024 --seq 512 --impls cuda,triton

Writes results.csv (a plain CSV: one header row), metadata.json (device, versions, git commit, date, command,
timer, and what each CSV column means), table.txt and PNG plots into --out (default bench_out/), and prints the
table.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from typing import List, Optional

import torch

from rnnfused import info

from . import impls as impls_mod, plots, presets, report, timing
from .config import CELLS, DTYPES, LENGTHS, MODES, parse_dtype
from .progress import Progress
from .runner import run_grid

__all__ = ["main", "build_parser"]

DEFAULT_OUT = "bench_out"


def _list(kind, choices=None):
    def parse(text: str):
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        out = []
        for v in values:
            try:
                v = kind(v)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
            if choices is not None and v not in choices:
                raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(choices)}")
            out.append(v)
        return out

    return parse


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise ValueError(f"expected a positive integer, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Axis flags (--cells ... --modes) replace that axis in every block of the "
                                       "preset. The baseline is always measured.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="preset", action="store_const", const="quick",
                      help="a few small configs (< 1 min on a CPU); same as --preset quick")
    size.add_argument("--full", dest="preset", action="store_const", const="full",
                      help="headline configs and size sweeps; same as --preset full")
    size.add_argument("--preset", choices=presets.preset_names(), help="the grid to run (default: default)")
    p.set_defaults(preset="default")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: the GPU when there is one")
    p.add_argument("--cells", type=_list(str, CELLS), help=f"comma list of {', '.join(CELLS)}")
    p.add_argument("--dtypes", type=_list(parse_dtype), help=f"comma list of {', '.join(DTYPES)}")
    p.add_argument("--batch", type=_list(_positive_int), help="batch sizes, e.g. 8,64")
    p.add_argument("--hidden", type=_list(_positive_int), help="hidden sizes, e.g. 256,1024")
    p.add_argument("--seq", type=_list(_positive_int), help="sequence lengths, e.g. 512")
    p.add_argument("--modes", type=_list(str, MODES), help="fwd, fwdbwd")
    p.add_argument("--lengths", type=_list(str, LENGTHS),
                   help="full (every sequence T steps), var (PackedSequence, lengths uniform in [T/4, T])")
    p.add_argument("--input-size", type=_positive_int, default=0, help="input features (default: = hidden)")
    p.add_argument("--layers", type=_positive_int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--impls", type=_list(str),
                   help="implementations to compare with the baseline: backend names (cpu, cuda, triton, "
                        "reference) select their variants (opt-in ones excepted), backend:variant one, a pattern "
                        "such as 'cuda:persistent-*' every match; or cell-loop")
    p.add_argument("--with-cell-loop", action="store_true", help="also time the nn.*Cell Python loop")
    p.add_argument("--with-reference", action="store_true", help="also time rnnfused's slow reference backend")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds after which no new shape starts (default: the preset's; 0: none)")
    p.add_argument("--warmup-ms", type=float, default=None, help="warm-up time per measurement")
    p.add_argument("--rep-ms", type=float, default=None, help="time of timed repetitions per measurement")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch.set_num_threads (default: PyTorch's; 1 for the CPU --quick preset)")
    p.add_argument("--no-l2-flush", dest="flush_l2", action="store_false",
                   help="GPU: keep the L2 cache warm between repetitions (default: flush it before each one by "
                        "zeroing 256 MB, as triton.testing.do_bench)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress indicator")
    p.add_argument("--list", action="store_true", help="print the configs and implementations, run nothing")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a check fails or an impl errors")
    return p


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the benchmark; returns the exit status (1 with --strict when a check failed or an impl raised)."""
    args = build_parser().parse_args(argv)
    device = _device(args.device)
    name = args.preset
    try:
        chosen = presets.preset(device.type, name)
    except ValueError as exc:
        raise SystemExit(f"--preset: {exc}") from None
    threads = args.threads or (chosen.threads if device.type == "cpu" else None)
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(args, device, name, chosen, argv)
    finally:
        torch.set_num_threads(saved_threads)


def _run(args, device: torch.device, name: str, chosen: "presets.Preset", argv: Optional[List[str]]) -> int:
    configs = presets.expand(chosen.blocks, args.cells, args.dtypes, args.batch, args.hidden, args.seq, args.modes,
                             args.input_size, args.layers, args.bidirectional, args.lengths)
    wanted = list(args.impls or [])
    also = ["cell-loop"] * args.with_cell_loop + ["reference"] * args.with_reference
    dtypes = sorted({c.torch_dtype for c in configs}, key=str)
    found = impls_mod.discover(device, dtypes, with_cell_loop="cell-loop" in wanted + also)
    try:
        chosen_impls = impls_mod.select(found, wanted, device, also)
    except ValueError as exc:
        raise SystemExit(f"--impls: {exc}") from None
    if not configs:
        raise SystemExit("no configs left: the axis flags removed every one")

    settings = dataclasses.replace(chosen.timer, flush_l2=args.flush_l2)
    if args.warmup_ms is not None:
        settings = dataclasses.replace(settings, warmup_s=args.warmup_ms / 1e3)
    if args.rep_ms is not None:
        settings = dataclasses.replace(settings, rep_s=args.rep_ms / 1e3)
    budget = chosen.time_budget_s if args.time_budget is None else (args.time_budget or None)

    impl_names = ", ".join(i.name for i in chosen_impls)
    if args.list:
        print(f"preset {name} on {device.type}: {len(configs)} configs; implementations: {impl_names}")
        for c in configs:
            print(" ", c.id)
        return 0

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(["python -m benchmarks"] + list(sys.argv[1:] if argv is None else argv)),
            **info.environment(device),
            "preset": name, "implementations": impl_names, "timer": timing.describe(device, settings)}
    if device.type == "cuda":
        meta["l2_flush"] = "yes" if settings.flush_l2 else "no"
    print(f"[bench] {name} preset on {meta['device']}: {len(configs)} configs x {len(chosen_impls)} "
          f"implementations ({impl_names})", file=sys.stderr)
    if device.type == "cpu" and float(meta.get("load_average", "0").split()[0]) > (os.cpu_count() or 1):
        print(f"[bench] warning: load average {meta['load_average']} exceeds the {os.cpu_count()} cores: CPU "
              f"timings will be noisy (other processes compete; --threads 1 avoids the worst of it)",
              file=sys.stderr)
    progress = Progress(len(configs) * len(chosen_impls), enabled=not args.quiet)
    start = time.perf_counter()
    results = run_grid(configs, chosen_impls, device, settings, progress, budget)
    meta["wall_time_s"] = f"{time.perf_counter() - start:.1f}"

    os.makedirs(args.out, exist_ok=True)
    table = report.format_table(results, meta)
    csv_path = os.path.join(args.out, "results.csv")
    report.write_csv(csv_path, results)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "metadata.json"), "w") as f:
        json.dump({**meta, "columns": report.column_notes(chosen_impls[0].name, device.type == "cuda")}, f,
                  indent=2)
    pngs = [] if args.no_plots else plots.write_plots(results, args.out, f"{meta['device']} · torch {meta['torch']}"
                                                      f" · {meta['date']}")
    print(table)
    bad = [r for r in results if r.status in ("failed", "error")]
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "error", "skipped")}
    print(f"[bench] {counts['ok']} timed, {counts['failed']} failed checks, {counts['error']} errors, "
          f"{counts['skipped']} skipped in {meta['wall_time_s']} s; wrote {csv_path}, table.txt, metadata.json"
          + (f" and {len(pngs)} plots" if pngs else "") + f" to {args.out}/", file=sys.stderr)
    return 1 if (args.strict and bad) else 0
