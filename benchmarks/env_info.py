"""Where and with what a run happened: device, library versions, git commit, date, command line."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from typing import Dict, Optional

import torch

__all__ = ["collect"]


def _git_commit(root: str) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("+dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except Exception:  # noqa: BLE001 - absent or broken install
        return "not installed"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: torch.device, argv: Optional[list] = None) -> Dict[str, str]:
    import rnnfused

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(["python -m benchmarks"] + list(sys.argv[1:] if argv is None else argv)),
        "git_commit": _git_commit(root),
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU: {_cpu_name()} ({os.cpu_count()} logical cores)"),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda) if device.type == "cuda" else f"{torch.version.cuda} (not used)",
        "cudnn": str(torch.backends.cudnn.version()) if device.type == "cuda" else "not used",
        "triton": _triton_version(),
        "rnnfused": rnnfused.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
    }
    if device.type == "cuda":
        info["tf32"] = (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} "
                        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    elif hasattr(os, "getloadavg"):
        info["load_average"] = " ".join(f"{v:.1f}" for v in os.getloadavg())  # other work skews CPU timings
    return info
