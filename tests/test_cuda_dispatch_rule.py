"""The cuda backend's path rule reads a measured crossover table: the persistent kernels only where
they fit AND the table allows the batch size; until a GPU run measured it, batch <= 64.

csrc/cuda/crossover.h is torch-free: a g++ driver parses tables with it and asks decide_persistent() — the function
dispatch.cpp's choose_path() calls — so the rule itself runs here without a GPU. benchmarks/crossover.py, which
rewrites the table from a benchmark CSV, is checked by feeding its output to the same parser.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "rnnfused", "persistent_crossover.txt")

DRIVER = r"""
#include <fstream>
#include <iostream>
#include <sstream>
#include "cuda/crossover.h"
using namespace rnnfused::cuda;
int main(int argc, char** argv) {
  CrossoverTable t;
  std::string error;
  std::string text = kDefaultCrossover;
  if (argc > 1) { std::ifstream f(argv[1]); std::stringstream s; s << f.rdbuf(); text = s.str(); }
  if (!parse_crossover(text, &t, &error)) { std::cout << "error " << error << "\n"; return 0; }
  std::string cell, dtype;
  long long hidden, batch;
  int fits;
  while (std::cin >> cell >> dtype >> hidden >> batch >> fits) {
    std::string why;
    const bool p = decide_persistent(t, cell, dtype, hidden, batch, fits != 0, "it does not fit", &why);
    std::cout << (p ? "persistent " : "stepwise ") << why << "\n";
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def rule(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler")
    tmp = tmp_path_factory.mktemp("rule")
    src, exe = tmp / "rule.cpp", tmp / "rule"
    src.write_text(DRIVER)
    subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"), str(src), "-o",
                    str(exe)], check=True)

    def ask(queries, table=None):
        """queries: (cell, dtype, hidden, batch, fits); table: a path or None (the built-in default)."""
        lines = "\n".join(" ".join(str(v) for v in (c, d, h, b, int(f))) for c, d, h, b, f in queries) + "\n"
        out = subprocess.run([str(exe)] + ([str(table)] if table else []), input=lines, capture_output=True,
                             text=True, check=True).stdout.splitlines()
        return out

    return ask


GRID = [(cell, dtype, hidden, batch) for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu")
        for dtype in ("bfloat16", "float16", "float32") for hidden in (64, 1024) for batch in (1, 8, 64, 65, 512)]


@pytest.mark.parametrize("table", [None, SHIPPED], ids=["built-in", "shipped"])
def test_persistent_path_is_bounded_to_batch_64_until_measured(rule, table):
    answers = rule([q + (True,) for q in GRID], table)
    for (cell, dtype, hidden, batch), answer in zip(GRID, answers):
        assert answer.split()[0] == ("persistent" if batch <= 64 else "stepwise"), (cell, dtype, hidden, batch, answer)
        assert ("<= 64" if batch <= 64 else "> 64") in answer and "not measured" in answer, answer


def test_a_layer_that_does_not_fit_stays_stepwise_and_says_why(rule):
    (answer,) = rule([("lstm", "bfloat16", 256, 8, False)])
    assert answer == "stepwise the persistent kernels cannot run this layer: it does not fit"


def test_first_matching_row_decides(rule, tmp_path):
    table = tmp_path / "t.txt"
    table.write_text("# source: made up\n"
                     "lstm  bfloat16  256   128   # small H: persistent up to 128\n"
                     "lstm  bfloat16  1024  16\n"
                     "rnn   *         *     0     # both Elman cells: never\n"
                     "*     *         *     64\n")
    answers = rule([("lstm", "bfloat16", 200, 128, True), ("lstm", "bfloat16", 256, 129, True),
                    ("lstm", "bfloat16", 512, 16, True), ("lstm", "bfloat16", 512, 17, True),
                    ("lstm", "bfloat16", 4096, 64, True), ("rnn_relu", "float32", 64, 1, True),
                    ("rnn_tanh", "bfloat16", 64, 1, True), ("gru", "float16", 64, 64, True)], table)
    assert [a.split()[0] for a in answers] == ["persistent", "stepwise", "persistent", "stepwise", "persistent",
                                               "stepwise", "stepwise", "persistent"]
    assert "[line 2: lstm bfloat16 256 128] (crossover table: made up)" in answers[0]
    assert "[line 4: rnn * * 0]" in answers[5]


def test_no_matching_row_means_stepwise(rule, tmp_path):
    table = tmp_path / "t.txt"
    table.write_text("gru float32 512 64\n")
    (answer,) = rule([("lstm", "float32", 256, 8, True)], table)
    assert answer.startswith("stepwise no row of the crossover table covers lstm float32 hidden_size=256")


@pytest.mark.parametrize("text,why", [
    ("lstm bfloat16 256\n", "line 1: expected 4 fields"),
    ("# c\nlstmm * * 8\n", "line 2: cell must be"),
    ("lstm float64 * 8\n", "dtype must be"),
    ("lstm * 0 8\n", "max_hidden must be a positive integer"),
    ("lstm * * -1\n", "max_batch must be an integer >= 0"),
    ("# only comments\n", "no rows"),
])
def test_malformed_tables_are_rejected_with_the_line(rule, tmp_path, text, why):
    table = tmp_path / "bad.txt"
    table.write_text(text)
    (answer,) = rule([], table) or ["(nothing)"]
    assert answer.startswith("error crossover table") and why in answer, answer


# ----------------------------------------------------------------------------------- regenerating the table
def _write_csv(path, timings):
    """A benchmark results.csv (benchmarks/report.py's columns: a plain CSV) with (cell, dtype, hidden, batch,
    variant, ms), and the run's metadata.json next to it."""
    with open(os.path.join(os.path.dirname(path), "metadata.json"), "w") as f:
        json.dump({"device": "NVIDIA H200", "date": "2026-12-01", "torch": "2.11.0+cu130",
                   "columns": {"median_ms": "..."}}, f)
    columns = ["config", "cell", "dtype", "batch", "hidden", "input_size", "seq_len", "layers", "bidirectional",
               "mode", "impl", "backend", "variant", "status", "check", "check_err", "check_tol", "median_ms",
               "p20_ms", "p80_ms", "us_per_step", "peak_mb", "speedup", "reps", "note"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for cell, dtype, hidden, batch, variant, ms in timings:
            w.writerow(dict(config=f"{cell}-{dtype}-B{batch}-H{hidden}", cell=cell, dtype=dtype, batch=batch,
                            hidden=hidden, input_size=hidden, seq_len=64, layers=1, bidirectional="false",
                            mode="fwdbwd", impl=f"cuda:{variant}", backend="cuda", variant=variant, status="ok",
                            median_ms=ms))
        # Rows the generator must ignore: another mode, a failed check, another backend.
        w.writerow(dict(cell="lstm", dtype="bf16", batch=512, hidden=256, layers=1, bidirectional="false", mode="fwd",
                        backend="cuda", variant="persistent", status="ok", median_ms=0.001))
        w.writerow(dict(cell="lstm", dtype="bf16", batch=512, hidden=256, layers=1, bidirectional="false",
                        mode="fwdbwd", backend="cuda", variant="persistent", status="failed", median_ms=0.001))


def test_benchmark_csv_regenerates_a_table_the_rule_reads(rule, tmp_path):
    timings = []
    # lstm bf16 H=256: persistent wins up to B=64, loses at 128 (and "wins" again at 256: noise, ignored).
    for batch, p, s in [(8, 1.0, 3.0), (32, 1.5, 3.1), (64, 2.5, 3.3), (128, 4.0, 3.5), (256, 3.0, 4.0)]:
        timings += [("lstm", "bf16", 256, batch, "persistent", p), ("lstm", "bf16", 256, batch, "stepwise", s)]
    # lstm bf16 H=1024: wins only at B=8.   gru fp32 H=512: loses everywhere.
    for batch, p, s in [(8, 2.0, 3.0), (32, 4.0, 3.5)]:
        timings += [("lstm", "bf16", 1024, batch, "persistent", p), ("lstm", "bf16", 1024, batch, "stepwise", s)]
    timings += [("gru", "fp32", 512, 8, "persistent", 5.0), ("gru", "fp32", 512, 8, "stepwise", 4.0)]
    results = tmp_path / "results.csv"
    _write_csv(results, timings)
    out = tmp_path / "crossover.txt"
    res = subprocess.run([sys.executable, "-m", "benchmarks.crossover", str(results), "--write", str(out)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert rows == [["gru", "float32", "512", "0"], ["lstm", "bfloat16", "256", "64"], ["lstm", "bfloat16", "1024", "8"],
                    ["gru", "float32", "*", "0"], ["lstm", "bfloat16", "*", "8"], ["*", "*", "*", "64"]]
    text = out.read_text()
    assert "# source: measured 2026-12-01 on NVIDIA H200, torch 2.11.0+cu130, fwdbwd medians" in text
    answers = rule([("lstm", "bfloat16", 256, 64, True), ("lstm", "bfloat16", 256, 128, True),
                    ("lstm", "bfloat16", 700, 8, True), ("lstm", "bfloat16", 700, 9, True),
                    ("gru", "float32", 512, 1, True), ("lstm", "bfloat16", 2048, 8, True),
                    ("rnn_tanh", "float16", 64, 64, True)], out)
    assert [a.split()[0] for a in answers] == ["persistent", "stepwise", "persistent", "stepwise", "stepwise",
                                               "persistent", "persistent"]
    assert "measured 2026-12-01 on NVIDIA H200" in answers[0]


def test_regenerating_from_a_csv_without_the_paths_fails_clearly(tmp_path):
    results = tmp_path / "results.csv"
    _write_csv(results, [])
    res = subprocess.run([sys.executable, "-m", "benchmarks.crossover", str(results)], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode != 0 and "no cuda:persistent / cuda:stepwise timings of the same shape" in res.stderr
