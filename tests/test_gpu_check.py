""".ci/gpu_check.sh fits the device budget: two calls (correctness, timing) written in its header,
each stopping before its time limit with at most 8 files in $OUT. The script's plumbing (stages, budget, reuse of the
build, files) runs here on a copy of the tree with a stub in place of Python, so no GPU and no build are needed;
what the stages do on the GPU is the device check's job.
"""
import os
import re
import shutil
import stat
import subprocess
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, ".ci", "gpu_check.sh")

STUB = textwrap.dedent(r"""
    #!/usr/bin/env bash
    # Stands in for python3: logs the call, writes what the real command would write.
    echo "$*" >> "$STUB_LOG"
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
      case "${args[$i]}" in
        --out) mkdir -p "${args[$((i + 1))]}"; echo "config,impl" > "${args[$((i + 1))]}/results.csv"
               echo "a table" > "${args[$((i + 1))]}/table.txt"; echo plot > "${args[$((i + 1))]}/plot.png";;
        --write) echo "* * * 64" > "${args[$((i + 1))]}";;
      esac
    done
    exit 0
    """).lstrip()


@pytest.fixture
def tree(tmp_path):
    """A copy of what the script touches, and a stub python on PATH-less invocation (PYTHON=...)."""
    repo = tmp_path / "repo"
    for part in (".ci", "csrc", os.path.join("tests", "gpu")):
        shutil.copytree(os.path.join(ROOT, part), repo / part)
    shutil.copy(os.path.join(ROOT, "setup.py"), repo / "setup.py")
    stub = tmp_path / "python3"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return repo, stub, tmp_path / "stub.log"


def _run(tree, mode, out):
    repo, stub, log = tree
    env = dict(os.environ, PYTHON=str(stub), STUB_LOG=str(log), OUT=str(out), GPU_CHECK_BUDGET_S="120")
    env.pop("TORCH_CUDA_ARCH_LIST", None)
    return subprocess.run(["bash", str(repo / ".ci" / "gpu_check.sh"), mode], env=env, capture_output=True, text=True,
                          timeout=300)


def test_header_names_the_two_device_calls():
    header = open(SCRIPT).read().split("\nset -uo pipefail")[0]
    calls = re.findall(r'run\(command="([^"]+)", timeout_s=(\d+), carry=\[([^\]]*)\]\)', header)
    assert [c[0] for c in calls] == ["bash .ci/gpu_check.sh correctness", "bash .ci/gpu_check.sh timing"], calls
    assert all(int(t) <= 600 for _, t, _ in calls)
    budget = int(re.search(r'GPU_CHECK_BUDGET_S:-(\d+)', open(SCRIPT).read()).group(1))
    assert budget + 30 <= 360, "each call must end inside 6 minutes"


@pytest.mark.parametrize("mode,expected", [
    ("correctness", {"summary.txt", "env.txt", "build.log", "tests.log"}),
    ("timing", {"summary.txt", "build.log", "bench.log", "tables.txt", "headline.csv", "variants.csv",
                "crossover.csv", "persistent_crossover.txt"}),
])
def test_each_call_writes_at_most_8_files(tree, tmp_path, mode, expected):
    out = tmp_path / f"out-{mode}"
    res = _run(tree, mode, out)
    files = set(os.listdir(out))
    assert expected <= files and len(files) <= 8, (sorted(files), res.stdout[-3000:], res.stderr[-3000:])
    assert all(os.path.isfile(out / f) for f in files)
    summary = (out / "summary.txt").read_text()
    calls = (tree[2]).read_text()
    assert "pip install --no-build-isolation --no-deps --no-input -e ." in calls
    if mode == "correctness":
        assert "tests/gpu/run_isolated.py --test-timeout" in calls and '-m not slow' in calls
        assert re.search(r"^tests rc=0", summary, re.M), summary
    else:
        assert calls.count("-m benchmarks --quiet --no-plots --time-budget") == 3, calls
        assert "-m benchmarks.crossover" in calls and "persistent_crossover.txt" in summary
        assert "/crossover/metadata.json --write" in calls, "the table's source line reads the run's metadata"
        # The persistent synchronisation variants are rows of benchmarks/variants.py, selected by a pattern.
        assert re.search(r"--impls cuda:stepwise,cuda:persistent-\* --cells", calls), calls
        assert "RNNFUSED_BENCH_VARIANTS" not in open(SCRIPT).read()


def test_second_call_reuses_the_build(tree, tmp_path):
    """The build is skipped while the sources are unchanged and the extension imports (call 2 on a warm machine)."""
    first = _run(tree, "correctness", tmp_path / "o1")
    assert "build rc=0" in (tmp_path / "o1" / "summary.txt").read_text(), first.stdout
    second = _run(tree, "timing", tmp_path / "o2")
    assert "build rc=0 0s (reused" in (tmp_path / "o2" / "summary.txt").read_text(), second.stdout
    assert open(tree[2]).read().count("pip install") == 1


def test_a_failed_build_stops_the_check(tree, tmp_path):
    repo, stub, log = tree
    stub.write_text(STUB.replace('exit 0\n', 'case "$*" in *"pip install"*) exit 1;; esac\nexit 0\n'))
    res = _run(tree, "correctness", tmp_path / "o")
    assert res.returncode == 1 and "build failed" in (tmp_path / "o" / "summary.txt").read_text()
    assert "run_isolated" not in log.read_text()
