"""``python -m benchmarks.crossover results.csv [--write rnnfused/persistent_crossover.txt]``: the cuda backend's
crossover table (csrc/cuda/crossover.h) from a GPU benchmark run that timed ``cuda:persistent`` next to
``cuda:stepwise``. The table's source line (device, date, torch) comes from the run's metadata.json (default: the
one next to the CSV; ``--metadata PATH`` for another).

For every (cell, dtype, hidden) measured, the table's max_batch is the largest measured batch B such that the
persistent path was faster than the step-wise path at every measured batch <= B (0 when it lost at the smallest):
the rule then never picks the persistent path beyond where it was seen to win. Rows are written per measured hidden
size (a row covers hidden sizes up to its own, down to the previous row's), then one row per (cell, dtype) for larger
hidden sizes (the largest measured one's bound), then the unmeasured default ``* * * 64``. Timings are the medians of
``--mode`` (default fwdbwd: training, which runs both kernels; fwd when only that was measured).

A sweep that feeds it (one device call, ~3 min on an H200):
    python -m benchmarks --impls cuda:stepwise,cuda:persistent --cells lstm,gru --dtypes bf16,fp32 \\
        --batch 8,32,64,128,256 --hidden 256,1024 --seq 64 --modes fwdbwd --out bench_out/crossover
    python -m benchmarks.crossover bench_out/crossover/results.csv --write rnnfused/persistent_crossover.txt
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Tuple

__all__ = ["crossover_rows", "format_table", "main"]

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # the table's names (torch's)
DEFAULT_ROW = ("*", "*", "*", 64)


def _read_rows(path: str, metadata: Optional[str] = None) -> Tuple[Dict[str, str], List[Dict[str, str]]]:
    """(the run's metadata.json, or {} when there is none; the rows of its results.csv)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    metadata = metadata or os.path.join(os.path.dirname(os.path.abspath(path)), "metadata.json")
    meta: Dict[str, str] = {}
    if os.path.isfile(metadata):
        with open(metadata) as f:
            meta = {k: str(v) for k, v in json.load(f).items() if not isinstance(v, (dict, list))}
    return meta, rows


def _medians(rows: Iterable[Dict[str, str]], mode: str) -> Dict[Tuple[str, str, int], Dict[int, Dict[str, float]]]:
    """{(cell, dtype, hidden): {batch: {variant: median_ms}}} for single-layer unidirectional cuda rows."""
    out: Dict[Tuple[str, str, int], Dict[int, Dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if (r.get("backend") != "cuda" or r.get("variant") not in ("persistent", "stepwise") or r.get("status") != "ok"
                or r.get("mode") != mode or r.get("dtype") not in DTYPE_NAMES or r.get("layers", "1") != "1"
                or r.get("bidirectional", "false") != "false" or not r.get("median_ms")):
            continue
        key = (r["cell"], DTYPE_NAMES[r["dtype"]], int(r["hidden"]))
        out[key][int(r["batch"])][r["variant"]] = float(r["median_ms"])
    return out


def _bounds(medians) -> Tuple[List[tuple], List[str]]:
    """(rows per measured (cell, dtype, hidden), evidence lines) where both paths were timed at some batch."""
    table, evidence = [], []
    for (cell, dtype, hidden) in sorted(medians):
        per_batch = medians[(cell, dtype, hidden)]
        bound, seen = 0, []
        for batch in sorted(per_batch):
            t = per_batch[batch]
            if "persistent" not in t or "stepwise" not in t:
                continue
            wins = t["persistent"] < t["stepwise"]
            seen.append(f"B={batch}: persistent {t['persistent']:.3f} ms vs stepwise {t['stepwise']:.3f} ms"
                        f"{'' if wins else ' (loses)'}")
            if not wins:
                break
            bound = batch
        if seen:
            table.append((cell, dtype, hidden, bound))
            evidence.append(f"{cell} {dtype} H={hidden}: max_batch {bound}  <- " + "; ".join(seen))
    return table, evidence


def crossover_rows(rows: List[Dict[str, str]], mode: Optional[str] = None) -> Tuple[List[tuple], List[str], str]:
    """(table rows (cell, dtype, max_hidden, max_batch), evidence lines, the mode used) from benchmark CSV rows."""
    modes = [mode] if mode else ["fwdbwd", "fwd"]
    for m in modes:
        table, evidence = _bounds(_medians(rows, m))
        if table:
            break
    else:
        raise ValueError("no cuda:persistent / cuda:stepwise timings of the same shape with status ok in the CSV "
                         f"(mode {' or '.join(modes)}, one layer, unidirectional)")
    largest: Dict[Tuple[str, str], int] = {}
    for cell, dtype, _, bound in table:  # sorted by hidden: the last one per (cell, dtype) is the largest
        largest[(cell, dtype)] = bound
    table += [(cell, dtype, "*", bound) for (cell, dtype), bound in sorted(largest.items())]
    table.append(DEFAULT_ROW)
    return table, evidence, m


def format_table(table: List[tuple], source: str, evidence: List[str]) -> str:
    lines = [
        "# rnnfused: when the cuda backend runs a layer on the persistent kernels (csrc/cuda/crossover.h reads this "
        "table;",
        "# written by `python -m benchmarks.crossover`; rnnfused.load_crossover_table() reloads it without a rebuild).",
        "# A row: cell dtype max_hidden max_batch; the first matching row decides (persistent when the kernels fit and",
        "# batch <= max_batch). Measured:",
        *[f"#   {e}" for e in evidence],
        f"# source: {source}",
    ]
    width = max(len(str(c)) for row in table for c in row)
    lines += ["  ".join(str(c).ljust(width) for c in row).rstrip() for row in table]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.crossover", description=__doc__.split("\n\n")[0])
    p.add_argument("csv", help="results.csv of a benchmark run with cuda:persistent and cuda:stepwise")
    p.add_argument("--mode", choices=["fwd", "fwdbwd"], help="timings to compare (default fwdbwd, else fwd)")
    p.add_argument("--write", metavar="PATH", help="write the table there (else print it)")
    p.add_argument("--metadata", metavar="PATH", help="the run's metadata.json (default: next to the CSV)")
    args = p.parse_args(argv)
    meta, rows = _read_rows(args.csv, args.metadata)
    try:
        table, evidence, mode = crossover_rows(rows, args.mode)
    except ValueError as exc:
        raise SystemExit(f"benchmarks.crossover: {args.csv}: {exc}") from None
    device = meta.get("device", "unknown GPU")
    source = (f"measured {meta.get('date', 'undated')} on {device}, torch {meta.get('torch', '?')}, {mode} medians "
              f"of {args.csv}")
    text = format_table(table, source, evidence)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text)
        print(f"wrote {args.write}", file=sys.stderr)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
