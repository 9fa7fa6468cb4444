"""tests/gpu/run_isolated.py: a test that hangs (as a stuck GPU kernel hangs its process) is killed after the
per-test timeout, reported as HUNG, and the run resumes with the tests after it. Runs on the CPU
with a made-up test file; the device check runs the persistent GPU tests through the same runner."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tests", "gpu", "run_isolated.py")

FAKE_TESTS = """
import time

def test_a_passes():
    pass

def test_b_hangs():
    time.sleep(600)  # a kernel that never finishes

def test_c_fails():
    assert 1 == 2

def test_d_passes_after_the_hang():
    pass
"""


def test_a_hanging_test_is_killed_and_the_rest_still_runs(tmp_path):
    (tmp_path / "test_fake.py").write_text(FAKE_TESTS)
    log = tmp_path / "children.log"
    start = time.monotonic()
    res = subprocess.run([sys.executable, RUNNER, "--test-timeout", "4", "--budget", "120", "--log", str(log), "--",
                          "-q", "-p", "no:cacheprovider", "test_fake.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - start
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert "HUNG: test_fake.py::test_b_hangs" in out, out
    assert "2 passed" in out and "1 failed" in out and "1 hung" in out and "2 process(es)" in out, out
    children = log.read_text()
    # The second child skipped what the first finished (a) and the hung test (b), and ran c and d.
    assert "1 failed, 1 passed, 2 deselected" in children, children
    assert elapsed < 100, f"took {elapsed:.0f} s"


def test_all_passing_exits_zero(tmp_path):
    (tmp_path / "test_ok.py").write_text("def test_one():\n    pass\n")
    res = subprocess.run([sys.executable, RUNNER, "--test-timeout", "30", "--", "-q", "-p", "no:cacheprovider",
                          "test_ok.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed, 0 hung, 1 process(es)" in res.stdout, res.stdout
