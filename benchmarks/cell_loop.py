"""Cell loops: a fused cell vs its ``nn.*Cell`` twin, stepped in a Python loop as a decoder does.

    python -m benchmarks cells                                   # the grid below, CSV + markdown into --out
    python -m benchmarks cells --cells lstm --dtypes fp64 --batch 97 --hidden 51

One measured call is a decoder loop of ``--steps`` (64) steps, ``state = cell(x[t], state)`` from a random initial
state, collecting every h_t — the same work for both cells, with identical weights:

    fwd     the loop under ``torch.no_grad()``
    fwdbwd  the loop, then ``torch.autograd.grad(h_1..h_T, [x, *weights], dy_1..dy_T)`` (dX included, as the layer
            benchmarks do; fresh gradient tensors each call)

Timing: the suite's timer (benchmarks/timing.py) with its warm-up; nn and fused are timed in turn, ``--rounds``
times per config (interleaved, so slow phases of a busy machine hit both), and the median over rounds of each
side's median is reported with the p20/p80 of the round medians. Before timing, a spot check compares the two loops'
outputs and gradients (float64: 1e-9, float32: 1e-4) and refuses to time a config that fails it.

Each config runs in a fresh Python process (``--no-isolate``: all in this one). Why: fwd+bwd of a cell loop
allocates fresh weight gradients at every step (G*H x I values per weight), and whether those pages are reused or
trimmed and faulted in again depends on what glibc's heap went through before; on the dev VM a fault costs ~1.4 ms
per MB. In one process running the whole grid, the history of the earlier configs moved single fwd+bwd ratios by up
to 2x between runs (e.g. LSTM fp32 B=1 H=128: 1.88x in one run, 0.84x in the next; 1.29x in a fresh process).

Writes ``cells.csv`` (a plain CSV, one header row), ``cells_metadata.json`` (device, versions, threads, load average,
command, date, timer) and ``cells.md`` (a markdown table) into ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from rnnfused._cells import CELL_KINDS, CellKind

from rnnfused import info

from .config import CELLS  # the registry's nn families: lstm, gru, rnn
from .timing import TimerSettings, describe, quantile, time_fn

__all__ = ["main", "CellConfig", "measure"]

DTYPES = {"fp32": torch.float32, "fp64": torch.float64}
MODES = ("fwd", "fwdbwd")
SEED = 20240611


@dataclass(frozen=True)
class CellConfig:
    cell: str
    dtype: str
    batch: int
    hidden: int
    steps: int

    @property
    def id(self) -> str:
        return f"{self.cell}-{self.dtype}-B{self.batch}-H{self.hidden}-T{self.steps}"


def _kind(family: str) -> CellKind:
    """The registry's first cell of an nn family (rnn: tanh, nn.RNNCell's default)."""
    return next(k for k in CELL_KINDS.values() if k.family == family)


def _cells(cfg: CellConfig, device: torch.device):
    """(nn cell, fused cell) with identical weights; input size = hidden size."""
    import rnnfused

    kind = _kind(cfg.cell)
    torch.manual_seed(SEED + cfg.hidden)
    ref = kind.torch_cell(cfg.hidden, cfg.hidden).to(device=device, dtype=DTYPES[cfg.dtype])
    return ref, getattr(rnnfused, kind.cell_module).from_module(ref)


class _Loop:
    """Inputs, initial state and upstream gradients of one config, and the measured loop."""

    def __init__(self, cfg: CellConfig, device: torch.device):
        g = torch.Generator(device=device).manual_seed(SEED)
        dtype, B, H, T = DTYPES[cfg.dtype], cfg.batch, cfg.hidden, cfg.steps
        self.is_lstm = _kind(cfg.cell).has_cell_state  # the state is a pair (h, c)
        self.x = torch.randn(T, B, H, generator=g, device=device, dtype=dtype).requires_grad_()
        h0 = torch.randn(B, H, generator=g, device=device, dtype=dtype)
        self.state0 = (h0, torch.randn(B, H, generator=g, device=device, dtype=dtype)) if self.is_lstm else h0
        self.dy = list(torch.randn(T, B, H, generator=g, device=device, dtype=dtype).unbind(0))

    def run(self, cell: nn.Module, mode: str) -> List[torch.Tensor]:
        """One measured call: h_1..h_T (and then the gradients, for fwdbwd)."""
        if mode == "fwd":
            with torch.no_grad():
                return self._forward(cell)
        outs = self._forward(cell)
        grads = torch.autograd.grad(outs, [self.x] + list(cell.parameters()), self.dy)
        return [o.detach() for o in outs] + list(grads)

    def _forward(self, cell: nn.Module) -> List[torch.Tensor]:
        state, outs = self.state0, []
        for x_t in self.x.unbind(0):
            state = cell(x_t, state)
            outs.append(state[0] if self.is_lstm else state)
        return outs


def _spot_check(loop: _Loop, ref: nn.Module, fused: nn.Module, cfg: CellConfig) -> Optional[str]:
    tol = 1e-9 if cfg.dtype == "fp64" else 1e-4
    for mode in MODES:
        for a, b in zip(loop.run(fused, mode), loop.run(ref, mode)):
            err = float((a - b).abs().max() / (1 + b.abs().max()))
            if not err <= tol:
                return f"{mode}: fused differs from nn by {err:.2e} (relative), more than {tol:g}"
    return None


def measure(cfg: CellConfig, device: torch.device, settings: TimerSettings, rounds: int) -> List[Dict]:
    """Rows (one per mode) of nn vs fused timings for one config."""
    ref, fused = _cells(cfg, device)
    loop = _Loop(cfg, device)
    failure = _spot_check(loop, ref, fused, cfg)
    rows = []
    for mode in MODES:
        row = {"cell": cfg.cell, "dtype": cfg.dtype, "batch": cfg.batch, "hidden": cfg.hidden, "steps": cfg.steps,
               "mode": mode}
        if failure is not None:
            rows.append({**row, "status": "failed", "note": failure})
            continue
        medians = {"nn": [], "fused": []}
        for _ in range(rounds):
            for name, cell in (("nn", ref), ("fused", fused)):
                medians[name].append(time_fn(lambda i, c=cell: loop.run(c, mode), device, settings).median)
        for name, values in medians.items():
            s = sorted(values)
            row[f"{name}_ms"] = statistics.median(s)
            row[f"{name}_p20_ms"] = quantile(s, 0.2)
            row[f"{name}_p80_ms"] = quantile(s, 0.8)
        row["speedup"] = row["nn_ms"] / row["fused_ms"]
        row["status"] = "ok"
        rows.append(row)
    return rows


COLUMNS = ["cell", "dtype", "batch", "hidden", "steps", "mode", "nn_ms", "nn_p20_ms", "nn_p80_ms", "fused_ms",
           "fused_p20_ms", "fused_p80_ms", "speedup", "status", "note"]


def measure_in_subprocess(cfg: CellConfig, args: argparse.Namespace) -> List[Dict]:
    """measure() of one config in a fresh Python process (see the module docstring): the worker prints its rows as
    JSON on its last line of stdout."""
    cmd = [sys.executable, "-m", "benchmarks.cell_loop", "--worker", "--cells", cfg.cell, "--dtypes", cfg.dtype,
           "--batch", str(cfg.batch), "--hidden", str(cfg.hidden), "--steps", str(cfg.steps),
           "--rounds", str(args.rounds), "--rep-ms", str(args.rep_ms), "--threads", str(args.threads),
           "--device", args.device]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so that -m benchmarks.cell_loop imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the benchmark worker for {cfg.id} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_csv(path: str, rows: List[Dict]) -> None:
    """A plain CSV (header row, then one row per config and mode): csv.DictReader / pandas read it as is."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r[k]) if k in r else "" for k in COLUMNS})


def markdown(rows: List[Dict], meta: Dict[str, str]) -> str:
    """One line per config: per-call time of the 64-step loop (ms) for nn and fused, and nn/fused, per mode."""
    lines = [f"Cell loops: fused cell vs nn.*Cell, {rows[0]['steps'] if rows else '?'} steps per call "
             "(median over rounds of the timer's median; speedup = nn / fused)", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "| cell | dtype | B | H | nn fwd ms | fused fwd ms | fwd speedup | nn fwd+bwd ms | fused fwd+bwd ms "
                  "| fwd+bwd speedup |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    by_key: Dict[tuple, Dict[str, Dict]] = {}
    for r in rows:
        by_key.setdefault((r["cell"], r["dtype"], r["batch"], r["hidden"]), {})[r["mode"]] = r
    for (cell, dtype, b, h), modes in by_key.items():
        cols = []
        for mode in MODES:
            r = modes.get(mode, {})
            if r.get("status") != "ok":
                cols += ["—", "—", r.get("note", "not run")]
                continue
            cols += [f"{r['nn_ms']:.3f}", f"{r['fused_ms']:.3f}", f"**{r['speedup']:.2f}×**"]
        lines.append(f"| {cell} | {dtype} | {b} | {h} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _choices(allowed):
    def parse(text: str) -> List[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(allowed)}, got {text!r}")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks cells", description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=_choices(CELLS), default=list(CELLS))
    p.add_argument("--dtypes", type=_choices(tuple(DTYPES)), default=list(DTYPES))
    p.add_argument("--batch", type=_ints, default=[1, 32, 97])
    p.add_argument("--hidden", type=_ints, default=[51, 128, 256])
    p.add_argument("--steps", type=int, default=64, help="decoder steps per measured call")
    p.add_argument("--rounds", type=int, default=3, help="interleaved nn/fused timings per config and mode")
    p.add_argument("--rep-ms", type=float, default=100.0, help="time of timed repetitions per measurement")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: cell loops are small)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", default="bench_out", help="folder for cells.csv and cells.md")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                   help="each config in a fresh Python process (default; see the module docstring)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one config, rows as JSON on stdout
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        settings = TimerSettings(warmup_s=0.02, rep_s=args.rep_ms / 1e3, min_reps=5, max_reps=200)
        if args.worker:  # measure_in_subprocess's side: exactly one config
            (cfg,) = [CellConfig(c, d, b, h, args.steps) for c in args.cells for d in args.dtypes for b in args.batch
                      for h in args.hidden]
            print(json.dumps(measure(cfg, device, settings, args.rounds)))
            return 0
        meta = info.environment(device)
        meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        meta["command"] = " ".join(["python -m benchmarks cells"] + list(sys.argv[2:] if argv is None else argv))
        meta["timer"] = f"{describe(device, settings)}; {args.rounds} interleaved rounds"
        meta["isolation"] = "a fresh Python process per config" if args.isolate else "all configs in one process"
        configs = [CellConfig(c, d, b, h, args.steps) for c in args.cells for d in args.dtypes for b in args.batch
                   for h in args.hidden]
        rows: List[Dict] = []
        for i, cfg in enumerate(configs):
            got = measure_in_subprocess(cfg, args) if args.isolate else measure(cfg, device, settings, args.rounds)
            rows += got
            summary = ", ".join(f"{r['mode']} {r['speedup']:.2f}x" if r["status"] == "ok" else
                                f"{r['mode']} {r['status']}" for r in got)
            print(f"[cells] {i + 1}/{len(configs)} {cfg.id}: {summary}", file=sys.stderr, flush=True)
        if hasattr(os, "getloadavg"):
            meta["load_average_after"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
        os.makedirs(args.out, exist_ok=True)
        write_csv(os.path.join(args.out, "cells.csv"), rows)
        with open(os.path.join(args.out, "cells_metadata.json"), "w") as f:
            json.dump(meta, f, indent=1)
        table = markdown(rows, meta)
        with open(os.path.join(args.out, "cells.md"), "w") as f:
            f.write(table)
        print(table)
        return 1 if any(r["status"] != "ok" for r in rows) else 0
    finally:
        torch.set_num_threads(saved_threads)


if __name__ == "__main__":
    sys.exit(main())
