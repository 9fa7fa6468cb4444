"""Terminal table, CSV and the description of the CSV's columns.

results.csv is a plain CSV: one header row, then one row per (config, implementation) — no comment lines, so
``csv.DictReader`` and ``pandas.read_csv`` read it as it is. What the run was (device, versions, commit, date,
command, timer) and what each column means go to metadata.json beside it (:func:`column_notes`).
"""
from __future__ import annotations

import csv
from typing import Dict, List, Optional, Sequence

from .runner import Result

__all__ = ["CSV_COLUMNS", "format_table", "write_csv", "read_csv", "column_notes"]

CSV_COLUMNS = ["config", "cell", "dtype", "batch", "hidden", "input_size", "seq_len", "lengths", "layers",
               "bidirectional", "mode", "impl", "backend", "variant", "status", "check", "check_err", "check_tol",
               "median_ms", "p20_ms", "p80_ms", "us_per_step", "peak_mb", "speedup", "reps", "samples", "note"]


def column_notes(baseline: str, on_gpu: bool) -> Dict[str, str]:
    """What the CSV's columns mean (metadata.json's ``columns``), for a run whose baseline is ``baseline``."""
    return {
        "config": "id of the configuration: cell-dtype-B-H-T[-I..][-L..][-bi][-var]-mode",
        "lengths": "full = every sequence has seq_len steps; var = a PackedSequence of lengths drawn uniformly from "
                   "[ceil(seq_len/4), seq_len] (seeded), given to the baseline and rnnfused alike",
        "mode": "fwd = forward under torch.no_grad(); fwdbwd = forward + backward (grads of the input and all "
                "weights) for a random upstream gradient; a full layer, input projection included",
        "impl": f"baseline {baseline}, or an rnnfused backend[:kernel path]",
        "status": "ok = checked and timed; failed = spot-check failed, not timed; error = raised, not timed; "
                  "skipped = cannot run here (see note)",
        "check_err": "max relative error vs a float64 run of the baseline on the same weights and inputs; check "
                     "is pass when it is <= check_tol = max(4 x the baseline's own error, a dtype floor) "
                     "(benchmarks/check.py)",
        "median_ms": "median milliseconds per call over the timing samples (p20_ms, p80_ms: 20th/80th percentile); "
                     "us_per_step = median / seq_len",
        "reps": "calls timed, in `samples` samples (on the CPU a sample is the mean of a block of calls, see "
                "metadata timer)",
        "peak_mb": ("torch.cuda.max_memory_allocated during one call minus the memory allocated before it "
                    "(activations, saved tensors, workspaces, outputs, gradients)" if on_gpu else
                    "empty: measured on the GPU only (PyTorch keeps no allocator statistics for the CPU)"),
        "speedup": "baseline median / this median, same config",
    }


def _num(v: Optional[float], fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _row(r: Result) -> Dict[str, str]:
    c = r.cfg
    s = r.stats
    return {
        "config": c.id, "cell": c.cell, "dtype": c.dtype, "batch": str(c.batch), "hidden": str(c.hidden),
        "input_size": str(c.input_size), "seq_len": str(c.seq_len), "lengths": c.lengths, "layers": str(c.layers),
        "bidirectional": str(c.bidirectional).lower(), "mode": c.mode, "impl": r.impl, "backend": r.backend,
        "variant": r.variant, "status": r.status, "check": r.check,
        "check_err": _num(r.check_err, ".3e"), "check_tol": _num(r.check_tol, ".3e"),
        "median_ms": _num(s and s.median, ".6g"), "p20_ms": _num(s and s.p20, ".6g"),
        "p80_ms": _num(s and s.p80, ".6g"), "us_per_step": _num(r.us_per_step, ".6g"),
        "peak_mb": _num(r.peak_mb, ".6g"), "speedup": _num(r.speedup, ".4g"), "reps": str(s.reps) if s else "",
        "samples": str(s.samples) if s else "", "note": r.note,
    }


def write_csv(path: str, results: Sequence[Result]) -> None:
    """results.csv: the header row, then one row per result."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in results:
            w.writerow(_row(r))


def read_csv(path: str) -> List[Dict[str, str]]:
    """The rows of a results.csv as dicts (``csv.DictReader``, nothing else needed)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def _speedup(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}x" if v >= 0.1 else f"{v:.2g}x"


def format_table(results: Sequence[Result], metadata: Optional[Dict[str, str]] = None) -> str:
    """One row per (config, implementation); the config shown once per group; speedup vs the baseline."""
    header = ["config", "impl", "median ms", "p20-p80 ms", "us/step", "peak MB", "speedup", "check", "note"]
    rows: List[List[str]] = []
    last_config = None
    for r in results:
        s = r.stats
        check = r.check if r.status == "ok" else r.status.upper() if r.status in ("failed", "error") else r.status
        if r.status == "failed":
            check = f"FAIL {r.check_err:.1e}>{r.check_tol:.0e}" if r.check_err is not None else "FAIL"
        note = r.note if len(r.note) <= 70 else r.note[:69] + "…"
        rows.append([
            r.cfg.id if r.cfg.id != last_config else "",
            r.impl,
            _ms(s.median) if s else "-",
            f"{_ms(s.p20)}-{_ms(s.p80)}" if s else "-",
            f"{r.us_per_step:.1f}" if s else "-",
            f"{r.peak_mb:.1f}" if r.peak_mb is not None else "-",
            _speedup(r.speedup),
            check,
            note,
        ])
        last_config = r.cfg.id
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = {2, 3, 4, 5, 6}

    def fmt(row):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    lines = []
    if metadata:
        lines.append(" | ".join(f"{k}: {metadata[k]}" for k in ("device", "torch", "cuda", "cudnn", "triton",
                                                                  "git_commit", "date") if k in metadata))
        if "timer" in metadata:
            lines.append(f"timer: {metadata['timer']}")
    lines += [fmt(header), fmt(["-" * w for w in widths])]
    prev = None
    for r, row in zip(results, rows):
        if prev is not None and r.cfg.id != prev:
            lines.append("")
        lines.append(fmt(row))
        prev = r.cfg.id
    return "\n".join(lines) + "\n"
