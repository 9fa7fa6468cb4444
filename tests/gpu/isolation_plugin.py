"""pytest plugin of tests/gpu/run_isolated.py (loaded with ``-p isolation_plugin``; inert without the runner).

The runner sets RNNFUSED_ISOLATE_DIR to a folder; this plugin then
- deselects the tests listed in ``done.txt`` there (finished, or hung, in an earlier child process), and
- appends ``start <nodeid>`` / ``end <nodeid> <outcome>`` lines to ``progress.txt`` as tests run, so the runner can
  tell which test hangs and resume after it;
- after each test that used the GPU: synchronises, and fails the test (in its teardown) with the persistent kernels'
  stall record when the watchdog abandoned a launch (rnnfused.persistent_stall());
- a daemon thread copies a stall record into ``stall.txt`` as soon as one appears, so that the runner can print
  where a kernel stalled even when the process hangs afterwards and has to be killed.
"""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

STATE_ENV = "RNNFUSED_ISOLATE_DIR"


def _state_dir():
    return os.environ.get(STATE_ENV)


def _append(name, line):
    with open(os.path.join(_state_dir(), name), "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _stall_record(clear):
    """The persistent kernels' stall record, when rnnfused with CUDA is loaded and the GPU was used; else None."""
    torch = sys.modules.get("torch")
    rnnfused = sys.modules.get("rnnfused")
    if torch is None or rnnfused is None or not torch.cuda.is_initialized():
        return None
    try:
        if not rnnfused.cuda_built():
            return None
        return rnnfused._extension.extension().persistent_stall(clear)
    except Exception:  # noqa: BLE001 - a diagnostic must not fail the run
        return None


def _watch_for_stalls():
    last = None
    while True:
        time.sleep(1.0)
        record = _stall_record(clear=False)
        if record and record["message"] != last:
            last = record["message"]
            _append("stall.txt", last)


def pytest_configure(config):
    if _state_dir():
        threading.Thread(target=_watch_for_stalls, name="stall-watch", daemon=True).start()


def pytest_collection_modifyitems(config, items):
    if not _state_dir():
        return
    path = os.path.join(_state_dir(), "done.txt")
    done = set(open(path).read().splitlines()) if os.path.exists(path) else set()
    keep = [item for item in items if item.nodeid not in done]
    dropped = [item for item in items if item.nodeid in done]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_runtest_logstart(nodeid, location):
    if _state_dir():
        _append("progress.txt", f"start {nodeid}")


def pytest_runtest_logreport(report):
    if not _state_dir():
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _append("progress.txt", f"end {report.nodeid} {report.outcome}")
    elif report.when == "teardown" and report.failed:  # e.g. the stall check below
        _append("progress.txt", f"end {report.nodeid} error")


@pytest.fixture(autouse=True)
def _fail_on_persistent_stall():
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    record = _stall_record(clear=True)
    if record:
        pytest.fail(f"the persistent-kernel watchdog abandoned a launch during this test: {record['message']}")
