"""What the four examples share: command line, seeding, progress lines and the nn.* vs rnnfused timing demo.

The models in the examples are written with plain ``nn.LSTM`` / ``nn.LSTMCell`` / ... ; each script calls
``rnnfused.convert(model)`` (unless ``--impl nn``), which turns every such layer into its rnnfused twin in place,
with the same parameters. Writing the model with ``from rnnfused import FusedLSTM as LSTM`` instead does the same;
converting keeps one model definition for both, and guarantees both start from identical weights.
"""
from __future__ import annotations

import argparse
import copy
import platform
import random
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

import rnnfused
from rnnfused.convert import FUSED_TWIN

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT_OUT = HERE / "out"

FUSED_TYPES = tuple(FUSED_TWIN.values())
IMPLS = ("fused", "nn")


# ------------------------------------------------------------------------------------------------- command line
def parser(description: str) -> argparse.ArgumentParser:
    """The options every example has; each script adds its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small CPU setting, under a minute")
    p.add_argument("--impl", choices=IMPLS, default="fused",
                   help="recurrent layers: rnnfused's Fused* (default) or plain torch.nn")
    p.add_argument("--torch", dest="impl", action="store_const", const="nn", help="same as --impl nn")
    p.add_argument("--backend", default=None,
                   help="rnnfused backend (reference|cpu|cuda|triton); default: the auto rule "
                        "(RNNFUSED_BACKEND, else the fastest for the device)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 with --quick on the CPU, where the models are too small for "
                        "more to help and oversubscribed threads are slow; else torch's choice)")
    p.add_argument("--epochs", type=int, default=None, help="override the setting's number of epochs")
    p.add_argument("--timing", dest="timing", action="store_true", default=None,
                   help="run the nn.* vs rnnfused timing demo (default: on in the full setting, off with --quick)")
    p.add_argument("--no-timing", dest="timing", action="store_false")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for plots and logs")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def setting(args: argparse.Namespace, quick: dict, full: dict) -> argparse.Namespace:
    """Fill every option left at None from the quick or full setting (explicit command-line values win)."""
    chosen = quick if args.quick else full
    for key, value in chosen.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.timing is None:
        args.timing = not args.quick
    if args.threads is None and args.quick and torch.device(args.device).type == "cpu":
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def dtype_of(args) -> torch.dtype:
    return getattr(torch, args.dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------- describing
def describe_impl(model: nn.Module) -> str:
    """E.g. 'FusedLSTM(backend=cpu), FusedLSTMCell(backend=cpu)' or 'LSTM, LSTMCell'."""
    parts = []
    for m in model.modules():
        if isinstance(m, FUSED_TYPES):
            first = next(m.parameters())
            name = rnnfused.resolve_backend(m.backend, first.device, first.dtype)
            parts.append(f"{type(m).__name__}(backend={name})")
        elif type(m) in FUSED_TWIN:
            parts.append(type(m).__name__)
    return ", ".join(parts)


def environment_line(device: str) -> str:
    where = torch.cuda.get_device_name() if device.startswith("cuda") else (platform.processor() or platform.machine())
    return (f"torch {torch.__version__}, rnnfused {rnnfused.__version__}, python {platform.python_version()}, "
            f"device {device} ({where}), {torch.get_num_threads()} threads")


# ------------------------------------------------------------------------------------------------- progress
class Progress:
    """Per-epoch lines with elapsed time; silent with quiet=True. Keeps the history for the caller and the tests."""

    def __init__(self, quiet: bool = False, stream=sys.stdout):
        self.quiet, self.stream, self.start = quiet, stream, time.perf_counter()
        self.history: list = []

    def log(self, epoch: int, epochs: int, **metrics) -> None:
        self.history.append({"epoch": epoch, **metrics})
        if not self.quiet:
            shown = "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
            print(f"epoch {epoch:3d}/{epochs}  {shown}  [{time.perf_counter() - self.start:6.1f} s]",
                  file=self.stream, flush=True)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


# ------------------------------------------------------------------------------------------------- timing demo
def timing_demo(model: nn.Module, run_epoch: Callable[[nn.Module, Optional[int]], object], backend: Optional[str],
                progress: Progress, repeats: int = 1, warmup_batches: int = 3) -> Dict[str, float]:
    """Seconds per training epoch of the same nn.* model (identical weights) as it is and after rnnfused.convert.

    ``run_epoch(m, limit)`` trains copy ``m`` (with its own optimizer) for one epoch, or for its first ``limit``
    batches. Each impl runs ``warmup_batches`` untimed batches first (allocator, oneDNN caches), then ``repeats``
    timed epochs; the fastest counts (the least disturbed by other processes).
    """
    seconds = {}
    for impl in ("nn", "fused"):
        m = copy.deepcopy(model)
        if impl == "fused":
            rnnfused.convert(m, backend=backend)
        run_epoch(m, warmup_batches)
        times = []
        for _ in range(repeats):
            sync(m)
            t0 = time.perf_counter()
            run_epoch(m, None)
            sync(m)
            times.append(time.perf_counter() - t0)
        seconds[impl] = min(times)
        progress.say(f"  timing  {impl:5s} [{describe_impl(m)}]: {seconds[impl]:.2f} s/epoch")
    progress.say(f"  timing  rnnfused / nn.* = {seconds['fused'] / seconds['nn']:.2f}x time "
                 f"({seconds['nn'] / seconds['fused']:.2f}x speed-up)")
    return seconds


def adam_runner(lr: float, train_epoch: Callable, *data_args, seed: Optional[int] = None):
    """``run(m, limit)`` for timing_demo: ``train_epoch(m, Adam(m), *data_args[, generator], limit)`` with a fresh
    optimizer and, when ``seed`` is given, a generator seeded alike for each impl (same batches for both)."""
    def run(m: nn.Module, limit: Optional[int]):
        generator = (torch.Generator().manual_seed(seed),) if seed is not None else ()
        return train_epoch(m, torch.optim.Adam(m.parameters(), lr=lr), *data_args, *generator, limit)

    return run


def sync(model: nn.Module) -> None:
    first = next(model.parameters(), None)
    if first is not None and first.is_cuda:
        torch.cuda.synchronize(first.device)


def header(progress: Progress, title: str, args, model: nn.Module) -> None:
    progress.say(f"== {title} ({'quick' if args.quick else 'full'} setting, seed {args.seed})")
    progress.say(f"   {environment_line(args.device)}")
    progress.say(f"   recurrent layers: {describe_impl(model)}")


def parse(p: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    return p.parse_args(list(argv) if argv is not None else None)
