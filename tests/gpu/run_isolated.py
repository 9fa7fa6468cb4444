"""Runs pytest in a child process that one hanging test cannot take down with the rest of the run.

    python tests/gpu/run_isolated.py [--test-timeout 120] [--budget 300] [--log FILE] -- <pytest arguments>

A GPU kernel that never finishes hangs its process in the next synchronisation, and pytest's own timeouts cannot
interrupt a thread stuck in the CUDA driver. So the tests run in a child process (its own session); the
isolation_plugin next to this file reports each test's start and end. When one test runs longer than
--test-timeout, the runner kills the child, records that test as HUNG (with the persistent kernels' stall record if
the watchdog left one), and starts a new child that skips every test already done — until all ran or --budget
seconds are spent. The persistent kernels' own watchdog normally ends a stalled launch within seconds (the test then
fails with the record); this runner is the net for hangs the watchdog cannot see.

Exit status: 0 when every test passed or was skipped; 1 when any failed, errored or hung; 2 when the budget ran out.
The child's output goes to --log (default: stdout); the last lines printed are a summary.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from isolation_plugin import STATE_ENV  # noqa: E402


def _read_lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def _progress(state):
    """(finished {nodeid: outcome}, the test started last and not finished or None)."""
    finished, running = {}, None
    for line in _read_lines(os.path.join(state, "progress.txt")):
        kind, _, rest = line.partition(" ")
        if kind == "start":
            running = rest
        elif kind == "end":
            nodeid, _, outcome = rest.rpartition(" ")
            finished[nodeid] = outcome
            if nodeid == running:
                running = None
    return finished, running


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run(pytest_args, test_timeout, budget, log):
    state = tempfile.mkdtemp(prefix="rnnfused-isolate-")
    env = dict(os.environ, **{STATE_ENV: state})
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", "pytest", "-p", "isolation_plugin", *pytest_args]
    start = time.monotonic()
    hung, children, exit_codes = [], 0, []
    stalls_seen = 0
    while True:
        children += 1
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        last_test, last_change = None, time.monotonic()
        outcome = None
        while outcome is None:
            try:
                proc.wait(timeout=0.5)
                outcome = "exited"
                break
            except subprocess.TimeoutExpired:
                pass
            _, running = _progress(state)
            now = time.monotonic()
            if running != last_test:
                last_test, last_change = running, now
            if now - start > budget:
                _kill(proc)
                outcome = "budget"
            elif running is not None and now - last_change > test_timeout:
                _kill(proc)
                outcome = "hung"
        stalls = _read_lines(os.path.join(state, "stall.txt"))
        if outcome != "exited":  # a killed process cannot report its stall itself: print what its watcher saw
            for message in stalls[stalls_seen:]:
                print(f"[run_isolated] stall record: {message}", flush=True)
        stalls_seen = len(stalls)
        finished, running = _progress(state)
        if outcome == "exited":
            exit_codes.append(proc.returncode)
            break
        if outcome == "budget":
            print(f"[run_isolated] budget of {budget:.0f} s used up while running {running or 'collection'}",
                  flush=True)
            break
        hung.append(running)
        print(f"[run_isolated] HUNG: {running} ran longer than {test_timeout:.0f} s; killed, resuming after it",
              flush=True)
        with open(os.path.join(state, "done.txt"), "w") as f:
            f.write("\n".join(list(finished) + hung) + "\n")

    finished, _ = _progress(state)
    counts = {}
    for value in finished.values():
        counts[value] = counts.get(value, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no tests finished"
    print(f"[run_isolated] {summary}, {len(hung)} hung, {children} process(es), "
          f"{time.monotonic() - start:.0f} s", flush=True)
    for nodeid in hung:
        print(f"[run_isolated] HUNG {nodeid}", flush=True)
    if outcome == "budget":
        return 2
    bad = hung or counts.get("failed") or counts.get("error") or any(code not in (0, 5) for code in exit_codes)
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--test-timeout", type=float, default=120.0, help="seconds one test may run (default 120)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for the whole run (default 600)")
    p.add_argument("--log", help="file for the children's output (default: stdout)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then the pytest arguments")
    args = p.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    if args.log:
        with open(args.log, "a") as log:
            return run(pytest_args, args.test_timeout, args.budget, log)
    return run(pytest_args, args.test_timeout, args.budget, None)


if __name__ == "__main__":
    sys.exit(main())
