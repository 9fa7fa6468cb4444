"""PNG plots: time per step vs hidden size and vs batch size, per cell and dtype, one line per implementation.

One figure per (cell, dtype, lengths, swept axis): a column per mode (fwd, fwd+bwd) and a row per slice of the other
sizes (e.g. B=8,T=512 and B=64,T=512 for the hidden sweep) that has at least two points; log-log axes. Packed
variable-length configs get their own figures (``*_var_vs_*.png``).
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from .config import MODES
from .runner import Result

__all__ = ["write_plots", "MAX_SLICES"]

MAX_SLICES = 4
_SWEEPS = {"hidden": ("batch", "seq_len"), "batch": ("hidden", "seq_len")}
_LABEL = {"hidden": "hidden size H", "batch": "batch size B", "seq_len": "T"}
_SHORT = {"hidden": "H", "batch": "B", "seq_len": "T"}


def _slices(results: Sequence[Result], axis: str) -> Dict[Tuple, Dict[str, Dict[str, List[Tuple[int, float]]]]]:
    """{fixed sizes: {mode: {impl: [(x, us per step), ...]}}} for timed results, slices with >= 2 x values."""
    fixed_names = _SWEEPS[axis]
    table: Dict[Tuple, Dict[str, Dict[str, List]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results:
        if r.stats is None:
            continue
        key = tuple(getattr(r.cfg, n) for n in fixed_names)
        table[key][r.cfg.mode][r.impl].append((getattr(r.cfg, axis), r.us_per_step))
    keep = {}
    for key, modes in table.items():
        xs = {x for impls in modes.values() for pts in impls.values() for x, _ in pts}
        if len(xs) >= 2:
            keep[key] = modes
    ranked = sorted(keep, key=lambda k: -len({x for i in keep[k].values() for p in i.values() for x, _ in p}))
    return {k: keep[k] for k in sorted(ranked[:MAX_SLICES])}


def write_plots(results: Sequence[Result], out_dir: str, title_suffix: str = "") -> List[str]:
    """Writes the PNGs into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    groups: Dict[Tuple[str, str, str], List[Result]] = defaultdict(list)
    for r in results:
        if r.cfg.layers == 1 and not r.cfg.bidirectional:
            groups[(r.cfg.cell, r.cfg.dtype, r.cfg.lengths)].append(r)
    impls = list(dict.fromkeys(r.impl for r in results))
    style = {name: (f"C{i % 10}", "os^vD<>p*hx+"[i % 12]) for i, name in enumerate(impls)}
    paths = []
    for (cell, dtype, lengths), rs in groups.items():
        packed = lengths == "var"
        for axis, fixed_names in _SWEEPS.items():
            slices = _slices(rs, axis)
            if not slices:
                continue
            modes = [m for m in MODES if any(m in s for s in slices.values())]
            fig, axes = plt.subplots(len(slices), len(modes), figsize=(5.2 * len(modes), 3.6 * len(slices)),
                                     squeeze=False)
            for row, (key, by_mode) in enumerate(slices.items()):
                fixed = ", ".join(f"{_SHORT[n]}={v}" for n, v in zip(fixed_names, key))
                for col, mode in enumerate(modes):
                    ax = axes[row][col]
                    xs = sorted({x for pts in by_mode.get(mode, {}).values() for x, _ in pts})
                    for impl, pts in by_mode.get(mode, {}).items():
                        pts = sorted(pts)
                        color, marker = style[impl]
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=impl)
                    ax.set_xscale("log", base=2)
                    ax.set_xticks(xs)
                    ax.xaxis.set_major_formatter(ScalarFormatter())
                    ax.xaxis.set_minor_formatter(NullFormatter())
                    ax.set_yscale("log")
                    ax.set_xlabel(_LABEL[axis])
                    ax.set_ylabel("µs per step (median)")
                    ax.set_title(f"{cell.upper()} {dtype} {'fwd' if mode == 'fwd' else 'fwd+bwd'}, {fixed}"
                                 + (", packed, lengths in [T/4, T]" if packed else ""), fontsize=10)
                    ax.grid(True, which="both", alpha=0.3)
                    ax.legend(fontsize=8)
            if title_suffix:
                fig.suptitle(title_suffix, fontsize=9)
            fig.tight_layout()
            path = os.path.join(out_dir, f"{cell}_{dtype}{'_var' if packed else ''}_vs_{axis}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
