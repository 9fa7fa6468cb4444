"""GPU architectures: the default build targets add PTX and the Blackwell GPUs the installed nvcc
can build for, the build records its targets (rnnfused._C.cuda_arches), and `auto` skips the cuda backend on a GPU the
build has no kernel image for, saying why (rnnfused.info prints the reason), instead of failing at the first launch.
"""
import os
import runpy
import subprocess

import pytest
import torch

import rnnfused
from rnnfused import _cuda, _extension, backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup_py():
    """setup.py's helpers, without running setup() (it runs only as __main__, as pip runs it)."""
    return runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="rnnfused_setup")


@pytest.mark.parametrize("version,expected", [
    ((12, 4), "8.0;9.0+PTX"),
    ((12, 8), "8.0;9.0+PTX;10.0;12.0"),
    ((13, 0), "8.0;9.0+PTX;10.0;12.0"),
    (None, "8.0;9.0+PTX"),
])
def test_default_arch_list_has_ptx_and_newer_gpus_by_nvcc_version(setup_py, version, expected):
    assert setup_py["default_cuda_arch_list"](version) == expected


def test_default_arch_list_is_valid_for_torch(setup_py):
    """torch.utils.cpp_extension accepts every entry (an unknown one would fail the build)."""
    from torch.utils import cpp_extension

    flags_of = getattr(cpp_extension, "_get_cuda_arch_flags", None)
    if flags_of is None:
        pytest.skip("this torch has no _get_cuda_arch_flags")
    old = os.environ.get("TORCH_CUDA_ARCH_LIST")
    try:
        os.environ["TORCH_CUDA_ARCH_LIST"] = setup_py["default_cuda_arch_list"]((13, 0))
        flags = flags_of()
    finally:
        if old is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old
    assert {"-gencode=arch=compute_90,code=compute_90", "-gencode=arch=compute_100,code=sm_100",
            "-gencode=arch=compute_120,code=sm_120", "-gencode=arch=compute_80,code=sm_80"} <= set(flags)
    # And the targets setup.py records are exactly those flags' code= targets.
    targets = setup_py["cuda_targets"](setup_py["default_cuda_arch_list"]((13, 0)))
    assert set(targets) == {f.rsplit("code=", 1)[1] for f in flags}


@pytest.mark.parametrize("arch_list,targets", [
    ("9.0", ["sm_90"]),
    ("8.0;9.0+PTX", ["sm_80", "sm_90", "compute_90"]),
    ("8.0 8.6 9.0a+PTX", ["sm_80", "sm_86", "sm_90a", "compute_90a"]),
    ("Ampere", ["unknown:Ampere"]),
])
def test_recorded_targets(setup_py, arch_list, targets):
    assert setup_py["cuda_targets"](arch_list) == targets


def test_this_nvcc_can_build_the_default_targets(setup_py):
    nvcc = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    if not os.path.exists(nvcc):
        pytest.skip("no nvcc")
    version = setup_py["nvcc_version"](os.path.dirname(os.path.dirname(nvcc)))
    assert version is not None
    listed = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True).stdout.split()
    for target in setup_py["cuda_targets"](setup_py["default_cuda_arch_list"](version)):
        assert target.replace("compute_", "sm_") in listed, (target, listed)


def test_the_extension_reports_its_targets():
    assert isinstance(rnnfused.cuda_arches(), tuple)
    if _extension.extension_loaded() and not _extension.cuda_built():
        assert rnnfused.cuda_arches() == ()


def test_auto_skips_cuda_on_a_gpu_without_kernel_image(monkeypatch):
    """With a CUDA build on a GPU it cannot run (simulated: the probe reports no kernel image), the cuda backend is
    unavailable with a reason naming the GPU and the build's targets, and `auto` moves on."""
    monkeypatch.setattr(_extension, "extension_loaded", lambda: True)
    monkeypatch.setattr(_extension, "cuda_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (12, 1))

    class FakeC:
        cuda_arches = ("sm_80", "sm_90")

        @staticmethod
        def cuda_kernel_image_error(index):
            return "no kernel image is available for execution on the device"

    monkeypatch.setattr(_extension, "_C", FakeC)
    monkeypatch.setattr(_cuda, "_IMAGE_CHECKS", {})
    reason = backends.unavailable_reason("cuda", "cuda:0", torch.bfloat16)
    assert reason is not None and "no kernel image for cuda:0 (sm_121)" in reason and "sm_80, sm_90" in reason
    assert "TORCH_CUDA_ARCH_LIST=12.1" in reason
    assert backends.resolve_backend(None, "cuda:0", torch.bfloat16) != "cuda"
    with pytest.raises(RuntimeError, match="backend='cuda' cannot run here: rnnfused._C has no kernel image"):
        backends.resolve_backend("cuda", "cuda:0", torch.bfloat16)


def test_a_gpu_the_build_targets_keeps_the_cuda_backend(monkeypatch):
    monkeypatch.setattr(_extension, "extension_loaded", lambda: True)
    monkeypatch.setattr(_extension, "cuda_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = []

    class FakeC:
        cuda_arches = ("sm_90",)

        @staticmethod
        def cuda_kernel_image_error(index):
            calls.append(index)
            return ""

    monkeypatch.setattr(_extension, "_C", FakeC)
    monkeypatch.setattr(_cuda, "_IMAGE_CHECKS", {})
    assert backends.unavailable_reason("cuda", "cuda:1", torch.float32) is None
    assert backends.unavailable_reason("cuda", "cuda:1", torch.float32) is None
    assert calls == [1]  # probed once per device
