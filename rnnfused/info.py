"""``python -m rnnfused.info``: what this build contains and what can run here.

Prints rnnfused's version, torch / CUDA / cuDNN / Triton versions, the GPU, and for every backend whether it is
built and usable on each device (with the reason when it is not).
"""
from __future__ import annotations

import platform
from typing import Dict, List

import torch

import rnnfused
from rnnfused import backends


def collect() -> Dict[str, object]:
    """The facts printed by :func:`main`, as a dict (for logs and benchmark metadata)."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception as exc:  # not installed, or broken install
        triton_version = f"not importable ({type(exc).__name__})"
    gpus: List[str] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(f"cuda:{i} {p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
                        f"{p.total_memory / 2**30:.0f} GiB)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    usable = {dev: {name: backends.unavailable_reason(name, dev) for name in backends.BACKENDS} for dev in devices}
    return {
        "rnnfused": rnnfused.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda,
        "cuDNN": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": triton_version,
        "extension": "loaded" if rnnfused.extension_loaded() else rnnfused.EXTENSION_ERROR,
        "extension built with CUDA": rnnfused.cuda_built(),
        "extension CUDA targets": ", ".join(rnnfused.cuda_arches()) or "none",
        "GPUs": gpus or ["none"],
        "backends": usable,
    }


def main() -> None:
    facts = collect()
    for key, value in facts.items():
        if key == "backends":
            continue
        if isinstance(value, list):
            value = "; ".join(value)
        print(f"{key:26s} {value}")
    for device, table in facts["backends"].items():
        print(f"backends on {device}:")
        for name, reason in table.items():
            print(f"  {name:10s} {'usable' if reason is None else 'no: ' + reason}")
    print(f"auto picks on cpu: {backends.resolve_backend('auto', 'cpu', torch.float32)}")


if __name__ == "__main__":
    main()
