"""``python -m rnnfused.info``: what this build contains, what can run here, and on what.

Prints rnnfused's version (and git commit in a source checkout), the torch the extension was built against,
Python, torch / CUDA / cuDNN / Triton versions, the CPU and GPUs, and for every backend whether it is usable on
each device (with the reason when it is not). The same facts, as a dict of strings, are the environment part of
the benchmark suite's metadata (:func:`environment`); paste the output into a bug report.
"""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Dict, List, Optional

import torch

import rnnfused
from rnnfused import backends
from rnnfused._extension import build_info

__all__ = ["environment", "backend_table", "collect", "cpu_name", "git_commit", "main"]


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The short commit of the git checkout holding ``path`` (default: rnnfused's source), ``+dirty`` when tracked
    files differ from it; None outside a checkout (an installed package)."""
    root = path or os.path.dirname(os.path.dirname(os.path.abspath(rnnfused.__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0 or not commit.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except Exception as exc:  # noqa: BLE001 - not installed, or a broken install
        return f"not importable ({type(exc).__name__})"


def _gpus() -> List[str]:
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(f"cuda:{i} {p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
                        f"{p.total_memory / 2**30:.0f} GiB)")
    return gpus


def _cpu_paths() -> str:
    """Which CPU path (fused / stepwise, csrc/cpu/cpu_path.cpp) each dtype takes, and the fused kernels' ISA."""
    if not rnnfused.extension_loaded():
        return "no extension"
    by_dtype = {str(dt).replace("torch.", ""): rnnfused.cpu_path("lstm", 2, 1, 1, 1, dtype=dt)
                for dt in (torch.float32, torch.float64, torch.bfloat16, torch.float16)}
    one_step = rnnfused.cpu_path("lstm", 1, 1, 1, 1, dtype=torch.float32)
    return (", ".join(f"{name} {path}" for name, path in by_dtype.items()) + f", one step of one row {one_step}"
            f" (fused kernels: {rnnfused.cpu_isa()})")


def environment(device: Optional[torch.device] = None) -> Dict[str, str]:
    """Versions and hardware, as strings.

    Args:
        device: the device a run uses (benchmark metadata): then ``device`` names it, and ``cuda`` / ``cudnn`` say
            "not used" on the CPU. None: every GPU is listed.

    Returns:
        keys ``rnnfused``, ``git_commit``, ``extension``, ``built_against``, ``cuda_targets``, ``python``,
        ``platform``, ``cpu``, ``torch``, ``cuda``, ``cudnn``, ``triton``, ``device`` or ``gpus``, ``torch_threads``,
        ``cpu_path`` (which CPU path each dtype takes and the fused kernels' instruction set), and ``load_average``
        (where the OS reports it: other work skews CPU timings) or ``tf32`` (on a GPU).
    """
    built = build_info()
    on_gpu = device is not None and torch.device(device).type == "cuda"
    cudnn = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none"
    info = {
        "rnnfused": rnnfused.__version__,
        "git_commit": git_commit() or "not a git checkout",
        "extension": ("loaded" + (" (with CUDA kernels)" if rnnfused.cuda_built() else " (CPU only)")
                      if rnnfused.extension_loaded() else f"not loaded: {rnnfused.EXTENSION_ERROR}"),
        "built_against": (f"torch {built['torch']}" + (f", CUDA arch list {built['cuda_arch_list']}"
                                                       if built["with_cuda"] else "")) if built else "unknown",
        "cuda_targets": ", ".join(rnnfused.cuda_arches()) or "none",   # the GPU code the extension holds
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "cudnn": cudnn,
        "triton": _triton_version(),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_path": _cpu_paths(),
    }
    if device is None:
        info["gpus"] = "; ".join(_gpus()) or "none"
    elif on_gpu:
        info["device"] = torch.cuda.get_device_name(device)
        info["tf32"] = (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} "
                        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    else:
        info["device"] = f"CPU: {info['cpu']}"
        info["cuda"] = f"{torch.version.cuda} (not used)"
        info["cudnn"] = "not used"
    if not on_gpu and hasattr(os, "getloadavg"):
        info["load_average"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return info


def backend_table() -> Dict[str, Dict[str, Optional[str]]]:
    """``{device: {backend: None if usable else why not}}`` for the CPU and, when there is one, the GPU."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {dev: {name: backends.unavailable_reason(name, dev) for name in backends.BACKENDS} for dev in devices}


def collect() -> Dict[str, object]:
    """:func:`environment` plus ``backends`` (:func:`backend_table`): everything :func:`main` prints."""
    return {**environment(), "backends": backend_table()}


def main() -> None:
    """Prints :func:`collect` as aligned ``key value`` lines, then the backend table and auto's pick."""
    facts = collect()
    for key, value in facts.items():
        if key != "backends":
            print(f"{key:15s} {value}")
    for device, table in facts["backends"].items():
        print(f"backends on {device}:")
        for name, reason in table.items():
            print(f"  {name:10s} {'usable' if reason is None else 'no: ' + reason}")
    print(f"auto picks on cpu: {backends.resolve_backend('auto', 'cpu', torch.float32)}")


if __name__ == "__main__":
    main()
