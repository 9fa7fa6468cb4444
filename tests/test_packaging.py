"""Packaging: pyproject.toml + setup.py metadata (license, torch range), an sdist that builds without torch, the
torch-version check at import, and — slow, they compile the extension — the sdist installed with
``pip install --no-build-isolation`` into a fresh venv that has only torch, and an isolated build (``pip wheel``
without ``--no-build-isolation``, what ``pip install .`` does) whose wheel installs and runs there too.

The slow tests install torch from a local wheel only (the exact version running here, looked up with
``--no-index``): they skip where torch would have to be downloaded, and pip is constrained to that version so an
isolated build can never fetch a multi-GB CUDA torch.
"""
import email
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

import rnnfused
from rnnfused import _extension

ROOT = Path(__file__).resolve().parents[1]
BUILD_ENV = {"RNNFUSED_BUILD_CUDA": "0", "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))}
NO_TORCH = "import sys; sys.modules['torch'] = None; "  # makes `import torch` raise ImportError


def _run(cmd, env=None, cwd=ROOT, timeout=1200):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def _metadata(text):
    return email.message_from_string(text)


# --------------------------------------------------------------------------------------------- metadata, sdist
def test_version_and_info_module():
    assert rnnfused.__version__.count(".") >= 2
    out = subprocess.run([sys.executable, "-m", "rnnfused.info"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    for needle in ("rnnfused", "torch", "triton", "built_against", "git_commit", "backends on cpu:",
                   "cpu        usable", "auto picks on cpu"):
        assert needle in out, f"{needle!r} missing from:\n{out}"


def test_pyproject_and_setup_agree_on_the_supported_torch_range():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    supported = re.search(r'TORCH_SUPPORTED = "([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    assert f"torch{supported}" in project["build-system"]["requires"]
    assert project["project"]["license"] == "BSD-3-Clause" and (ROOT / "LICENSE").is_file()
    assert "the rnnfused authors" in (ROOT / "LICENSE").read_text()
    assert set(project["project"]["optional-dependencies"]) >= {"triton", "test"}


def _tracked_files(*folders):
    """The files git tracks under `folders` (relative paths), or, outside a git checkout (an unpacked sdist), every
    file there except bytecode and build outputs."""
    proc = subprocess.run(["git", "ls-files", "--", *folders], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return [line for line in proc.stdout.splitlines() if (ROOT / line).is_file()]
    return [str(p.relative_to(ROOT)) for f in folders for p in (ROOT / f).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".so", ".o", ".pyc"))
            and p.name != "_build_info.py"]


def test_sdist_and_metadata_need_no_torch(tmp_path):
    """With ``import torch`` failing, the PEP 517 hooks still write the sdist and the metadata (the supported torch
    range as the requirement); building the wheel stops with a message that says what to do."""
    sdist_dir, meta_dir = tmp_path / "sdist", tmp_path / "meta"
    sdist_dir.mkdir(), meta_dir.mkdir()
    hooks = "import setuptools.build_meta as b; "
    name = _run([sys.executable, "-c", NO_TORCH + hooks + f"print(b.build_sdist({str(sdist_dir)!r}))"]).split()[-1]
    (sdist,) = sdist_dir.glob("rnnfused-*.tar.gz")
    assert sdist.name == name
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = _metadata(tar.extractfile(f"{sdist.name[:-len('.tar.gz')]}/PKG-INFO").read().decode())
    for needed in ("setup.py", "pyproject.toml", "LICENSE", "README.md", "csrc/ops.cpp", "csrc/common/cell_math.h",
                   "csrc/cpu/ops_cpu.cpp", "triton_kernels/__init__.py", "rnnfused/__init__.py",
                   "rnnfused/convert.py", "rnnfused/persistent_crossover.txt"):
        assert needed in names, f"{needed} is not in the sdist"
    # Everything a build reads: every tracked file of the sources and packages (so building the sdist is building
    # this tree, which CI does; the full sdist -> fresh venv build below runs outside CI).
    tracked = _tracked_files("csrc", "rnnfused", "triton_kernels")
    assert tracked, "no tracked files found"
    missing = sorted(set(tracked) - names)
    assert not missing, f"tracked files missing from the sdist: {missing[:10]}"
    assert not any(n.endswith((".so", ".o")) or n.endswith("_build_info.py") for n in names)
    assert pkg_info["License-Expression"] == "BSD-3-Clause" and "LICENSE" in pkg_info.get_all("License-File")
    assert pkg_info.get_all("Requires-Dist")[0] == "torch<2.14,>=2.11"

    dist_info = _run([sys.executable, "-c", NO_TORCH + hooks + f"print(b.prepare_metadata_for_build_wheel("
                                                                f"{str(meta_dir)!r}))"]).split()[-1]
    meta = _metadata((meta_dir / dist_info / "METADATA").read_text())
    assert meta["Name"] == "rnnfused" and meta["Version"] == rnnfused.__version__
    assert meta.get_all("Requires-Dist")[0] == "torch<2.14,>=2.11"
    assert set(meta.get_all("Provides-Extra")) >= {"triton", "test", "onnx"}

    proc = subprocess.run([sys.executable, "-c", NO_TORCH + hooks + f"b.build_wheel({str(tmp_path)!r})"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "torch must be installed to build the extension" in proc.stdout + proc.stderr
    assert "--no-build-isolation" in proc.stdout + proc.stderr


def test_metadata_with_torch_requires_the_torch_minor_release_it_builds_against(tmp_path):
    dist_info = _run([sys.executable, "-c", "import setuptools.build_meta as b; "
                                            f"print(b.prepare_metadata_for_build_wheel({str(tmp_path)!r}))"])
    meta = _metadata((tmp_path / dist_info.split()[-1] / "METADATA").read_text())
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    assert meta.get_all("Requires-Dist")[0] == f"torch<{major}.{minor + 1},>={major}.{minor}"


# --------------------------------------------------------------------------------- torch version check at import
def test_the_built_extension_records_the_torch_it_was_built_against():
    info = _extension.build_info()
    assert info is not None, "setup.py writes rnnfused/_build_info.py next to _C"
    assert info["torch"] == torch.__version__ and info["torch_cuda"] == torch.version.cuda
    assert info["with_cuda"] == rnnfused.cuda_built()
    assert _extension.torch_mismatch(info, torch.__version__, torch.version.cuda) is None


def test_torch_mismatch_rules():
    cpu = {"torch": "2.13.0+cpu", "torch_cuda": None, "with_cuda": False}
    assert _extension.torch_mismatch(cpu, "2.13.1+cpu", None) is None, "same minor release: loaded"
    assert _extension.torch_mismatch(cpu, "2.13.0+cu130", "13.0") is None
    why = _extension.torch_mismatch(cpu, "2.12.1", None)
    assert "built against torch 2.13.0+cpu, but torch 2.12.1 is installed" in why and "--no-build-isolation" in why
    gpu = {"torch": "2.13.0+cu130", "torch_cuda": "13.0", "with_cuda": True}
    assert _extension.torch_mismatch(gpu, "2.13.0+cu130", "13.0") is None
    assert "has no CUDA" in _extension.torch_mismatch(gpu, "2.13.0+cpu", None)
    assert "uses CUDA 12.8" in _extension.torch_mismatch(gpu, "2.13.0+cu128", "12.8")


def test_import_with_another_torch_warns_and_keeps_the_extension_unloaded(tmp_path):
    """A build record of another torch minor release: ``import rnnfused`` warns, does not load _C, names both
    versions wherever _C is needed, and the reference backend still runs."""
    fake = ("import sys, types, torch; info = types.ModuleType('rnnfused._build_info'); "
            "info.TORCH_VERSION = '2.99.0'; info.TORCH_CUDA_VERSION = None; info.WITH_CUDA = False; "
            "info.CUDA_ARCH_LIST = None; sys.modules['rnnfused._build_info'] = info; ")
    check = ("import warnings\n"
             "with warnings.catch_warnings(record=True) as caught:\n"
             "    warnings.simplefilter('always')\n"
             "    import rnnfused\n"
             "print('WARNED', ' | '.join(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)))\n"
             "print('LOADED', rnnfused.extension_loaded())\n"
             "x = torch.randn(3, 2, 4)\n"
             "print('REF', rnnfused.FusedLSTM(4, 5, backend='reference')(x)[0].shape)\n"
             "try:\n"
             "    rnnfused.FusedLSTM(4, 5, backend='cpu')(x)\n"
             "except RuntimeError as exc:\n"
             "    print('CPU', exc)\n")
    out = _run([sys.executable, "-c", fake + "\n" + check], cwd=tmp_path)
    assert f"WARNED rnnfused._C was built against torch 2.99.0, but torch {torch.__version__} is installed" in out
    assert "only the 'reference' backend runs" in out
    assert "LOADED False" in out and "REF torch.Size([3, 2, 5])" in out
    assert "CPU rnnfused: backend='cpu' cannot run here: rnnfused._C was built against torch 2.99.0" in out


# ------------------------------------------------------------------------------- fresh venv, sdist, isolated build
def _local_torch_available(pip):
    """Whether pip can install this exact torch without an index (a local wheel, e.g. in find-links)."""
    proc = subprocess.run([*pip, "install", "--dry-run", "--no-deps", "--no-index", f"torch=={torch.__version__}"],
                          capture_output=True, text=True)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A new venv holding only torch (this exact version, from a local wheel) and the tools a
    --no-build-isolation build needs (setuptools>=77, ninja)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run([sys.executable, "-m", "venv", venv])
    pip = [venv / "bin" / "python", "-m", "pip"]
    if not _local_torch_available(pip):
        pytest.skip(f"torch=={torch.__version__} has no local wheel here: installing it would mean a download")
    constraints = venv.parent / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")
    _run([*pip, "install", "-q", f"torch=={torch.__version__}", "setuptools>=77", "ninja"],
         env={"PIP_CONSTRAINT": str(constraints)})
    return venv, constraints


_CHECK = """
import importlib.util, os, sys, torch, rnnfused
from rnnfused import FusedLSTM, _build_info
assert rnnfused.__file__.startswith(sys.prefix), rnnfused.__file__
assert importlib.util.find_spec("rnnfused._triton").origin.startswith(sys.prefix)
assert rnnfused.extension_loaded(), rnnfused.EXTENSION_ERROR
assert _build_info.TORCH_VERSION == torch.__version__, (_build_info.TORCH_VERSION, torch.__version__)
assert os.path.isfile(rnnfused._cuda.CROSSOVER_FILE), "the cuda dispatch table is installed next to the package"
m = FusedLSTM(3, 4, num_layers=2, backend="cpu")
x = torch.randn(5, 2, 3, requires_grad=True)
out, (h, c) = m(x)
out.sum().backward()
ref = rnnfused.revert(m)(x)[0]
torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
print("OK", tuple(out.shape), tuple(x.grad.shape), rnnfused.__version__)
"""


def _installed_runs(venv, tmp_path):
    out = _run([venv / "bin" / "python", "-c", _CHECK], cwd=tmp_path)
    assert f"OK (5, 2, 4) (5, 2, 3) {rnnfused.__version__}" in out
    _run([venv / "bin" / "python", "-m", "pip", "check"], cwd=tmp_path)
    info = _run([venv / "bin" / "python", "-m", "rnnfused.info"], cwd=tmp_path)
    assert f"torch {torch.__version__}" in info and "not a git checkout" in info


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true",
                    reason="a second full build of the extension (5-6 min on 2 cores, half of CI's test time): run "
                           "outside CI, where CI is unset; in CI the sdist's file list is checked against the tracked "
                           "sources (test_sdist_and_metadata_need_no_torch) and the tree itself is built")
def test_sdist_installs_with_no_build_isolation_into_a_fresh_venv_with_only_torch(fresh_venv, tmp_path):
    venv, constraints = fresh_venv
    _run([sys.executable, "-c", f"import setuptools.build_meta as b; b.build_sdist({str(tmp_path)!r})"])
    (sdist,) = tmp_path.glob("rnnfused-*.tar.gz")
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-build-isolation", sdist], cwd=tmp_path,
         env={**BUILD_ENV, "PIP_CONSTRAINT": str(constraints)})
    _installed_runs(venv, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true",
                    reason="a second full build of the extension (~4 min on 2 cores): run outside CI, where CI is unset")
def test_isolated_build_makes_a_wheel_that_installs_elsewhere(fresh_venv, tmp_path):
    """``pip wheel .`` with build isolation (the build half of ``pip install .``): pip installs the build
    requirements (torch too, held to this exact version) into a throwaway environment, builds there, and the wheel
    installs and runs in the fresh venv."""
    venv, constraints = fresh_venv
    wheel_dir = tmp_path / "wheels"
    # PIP_BUILD_CONSTRAINT: pip >= 25.3 applies constraints to build environments only through it.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheel_dir, ROOT],
         env={**BUILD_ENV, "PIP_CONSTRAINT": str(constraints), "PIP_BUILD_CONSTRAINT": str(constraints)})
    (wheel,) = wheel_dir.glob("rnnfused-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = _metadata(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        built = z.read("rnnfused/_build_info.py").decode()
    assert any(n.startswith("rnnfused/_C") and n.endswith(".so") for n in names)
    assert "rnnfused/_triton/__init__.py" in names and any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "rnnfused/persistent_crossover.txt" in names, "the cuda dispatch table ships with the package"
    assert f"TORCH_VERSION = {torch.__version__!r}" in built, "built against the constrained torch"
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    assert meta.get_all("Requires-Dist")[0] == f"torch<{major}.{minor + 1},>={major}.{minor}"
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel],
         cwd=tmp_path)
    _installed_runs(venv, tmp_path)
