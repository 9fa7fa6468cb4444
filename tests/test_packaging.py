"""Packaging: the sdist carries the sources, a wheel built with --no-build-isolation installs and imports from
elsewhere, and the package reports its version and what it can run (python -m rnnfused.info)."""
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import rnnfused

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_info_module():
    assert rnnfused.__version__.count(".") >= 2
    out = subprocess.run([sys.executable, "-m", "rnnfused.info"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    for needle in ("rnnfused", "torch", "triton", "backends on cpu:", "cpu        usable", "auto picks on cpu"):
        assert needle in out, f"{needle!r} missing from:\n{out}"


def test_sdist_holds_csrc_and_triton_kernels(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "RNNFUSED_BUILD_CUDA": "0"})
    (sdist,) = tmp_path.glob("rnnfused-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for needed in ("setup.py", "csrc/ops.cpp", "csrc/common/cell_math.h", "csrc/cpu/ops_cpu.cpp",
                   "triton_kernels/__init__.py", "rnnfused/__init__.py", "README.md"):
        assert needed in names, f"{needed} is not in the sdist"
    assert not any(n.endswith((".so", ".o")) for n in names)


@pytest.mark.slow
def test_wheel_builds_and_installs_elsewhere(tmp_path):
    """pip wheel --no-build-isolation builds it; installed into a bare folder it imports and runs from there."""
    wheel_dir, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True,
                   env={**os.environ, "RNNFUSED_BUILD_CUDA": "0", "MAX_JOBS": str(os.cpu_count() or 2)})
    (wheel,) = wheel_dir.glob("rnnfused-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("rnnfused/_C") and n.endswith(".so") for n in names)
    assert "rnnfused/_triton/__init__.py" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    check = ("import rnnfused, torch; from rnnfused import FusedGRU; "
             "assert rnnfused.__file__.startswith(%r), rnnfused.__file__; "
             "import rnnfused._triton; assert rnnfused._triton.__file__.startswith(%r); "
             "m = FusedGRU(3, 4, backend='cpu'); print(m(torch.randn(5, 2, 3))[0].shape)") % (str(target),
                                                                                             str(target))
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.returncode == 0, out.stderr
    assert "torch.Size([5, 2, 4])" in out.stdout
