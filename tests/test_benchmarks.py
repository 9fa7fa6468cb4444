"""The benchmark suite (benchmarks/): the --quick run end to end (a plain CSV that csv.DictReader reads as it is,
metadata.json), its timers and statistics, spot-check, implementations and the variant table, packed
variable-length workloads, presets and reports; GPU code paths (CUDA-event timer with and without the L2 flush,
peak memory, cuDNN baseline, bf16/fp16) on a GPU. Timing never decides a result here: only that measurements exist
and are well-formed."""
import csv
import io
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package lives at the repository top level
    sys.path.insert(0, str(ROOT))

from benchmarks import check, cli, impls, plots, presets, report, timing, variants  # noqa: E402
from benchmarks.config import BenchConfig  # noqa: E402
from benchmarks.progress import Progress  # noqa: E402
from benchmarks.runner import Result, run_grid  # noqa: E402
from benchmarks.timing import Stats, TimerSettings  # noqa: E402
from benchmarks.workload import Workload  # noqa: E402
from helpers import requires_cuda  # noqa: E402

CPU = torch.device("cpu")
FAST = TimerSettings(warmup_s=0.0, rep_s=0.0, min_warmup=1, min_reps=3, max_reps=3)


# ------------------------------------------------------------------------------------------ the --quick run
def test_quick_preset_writes_table_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["--quick", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configs = presets.expand(presets.preset(device.type, "quick").blocks)

    table = (out / "table.txt").read_text()
    assert table in printed
    assert "speedup" in table and "median ms" in table
    for cfg in configs:
        assert cfg.id in table

    meta = json.loads((out / "metadata.json").read_text())
    for key in ("device", "torch", "cuda", "cudnn", "triton", "git_commit", "date", "command", "rnnfused",
                "built_against", "timer", "columns"):
        assert meta.get(key), f"metadata {key} missing"
    assert "--quick" in meta["command"]
    assert f"timer: {meta['timer']}" in table
    if device.type == "cpu":
        assert "torch.utils.benchmark.Timer" in meta["timer"] and meta["torch_threads"] == "1"
        assert "1 threads" in meta["timer"], "the quick preset's one thread is the Timer's thread count"
    else:
        assert "L2 flushed" in meta["timer"] and meta["l2_flush"] == "yes"
    assert set(meta["columns"]) <= set(report.CSV_COLUMNS)

    # A plain CSV: the first line is the header, and csv.DictReader needs no comment handling.
    text = (out / "results.csv").read_text()
    assert text.splitlines()[0] == ",".join(report.CSV_COLUMNS) and "\n#" not in text and not text.startswith("#")
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == report.read_csv(str(out / "results.csv"))
    names = meta["implementations"].split(", ")
    assert names[0] == impls.baseline_name(device)
    assert len(rows) == len(configs) * len(names)
    assert [r["config"] for r in rows[:: len(names)]] == [c.id for c in configs]
    assert {r["status"] for r in rows} <= {"ok", "skipped"}, [r for r in rows if r["status"] not in ("ok", "skipped")]
    timed = [r for r in rows if r["status"] == "ok"]
    assert {r["impl"] for r in timed} == set(names), "every implementation must have been timed at least once"
    for r in rows:
        if r["status"] == "skipped":
            assert r["note"] and not r["median_ms"]
    for r in timed:
        p20, med, p80 = float(r["p20_ms"]), float(r["median_ms"]), float(r["p80_ms"])
        assert 0 < p20 <= med <= p80
        assert math.isclose(float(r["us_per_step"]), med * 1e3 / int(r["seq_len"]), rel_tol=1e-4)
        assert int(r["reps"]) >= int(r["samples"]) >= 1 and r["lengths"] == "full"
        assert r["check"] == ("base" if r["impl"] == names[0] else "pass")
        assert float(r["check_err"]) >= 0
        assert (r["peak_mb"] != "") == (device.type == "cuda")
        if r["impl"] == names[0]:
            assert float(r["speedup"]) == 1.0
        else:
            base = next(b for b in timed if b["config"] == r["config"] and b["impl"] == names[0])
            assert math.isclose(float(r["speedup"]), float(base["median_ms"]) / med, rel_tol=1e-3)

    pngs = sorted(p.name for p in out.glob("*.png"))
    cells = sorted({c.cell for c in configs})
    dtypes = sorted({c.dtype for c in configs})
    assert pngs == sorted(f"{c}_{d}_vs_{axis}.png" for c in cells for d in dtypes for axis in ("batch", "hidden"))
    for p in out.glob("*.png"):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_pytest_benchmark_suite_collects_and_runs_once(tmp_path):
    """`pytest benchmarks/` (each benchmark run once with --benchmark-disable): the suite itself stays runnable."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "-q", "--benchmark-disable", "-x",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


# ----------------------------------------------------------------------------------------------- statistics
def test_summarize_matches_numpy_percentiles():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 5, 10, 101):
        samples = (torch.rand(n, generator=g, dtype=torch.float64) * 10).tolist()
        s = timing.summarize(samples)
        assert s.reps == n
        for got, q in ((s.median, 50), (s.p20, 20), (s.p80, 80)):
            assert math.isclose(got, float(np.percentile(samples, q)), rel_tol=1e-12, abs_tol=1e-12)
        assert s.p20 <= s.median <= s.p80


def test_summarize_known_values_and_bad_input():
    assert timing.summarize([3.0, 1.0, 2.0]) == Stats(median=2.0, p20=1.4, p80=2.6, reps=3)
    assert timing.summarize([4.0]) == Stats(4.0, 4.0, 4.0, 1)
    with pytest.raises(ValueError, match="at least one"):
        timing.summarize([])
    with pytest.raises(ValueError, match="finite"):
        timing.summarize([1.0, float("nan")])
    with pytest.raises(ValueError, match="q must"):
        timing.quantile([1.0], 1.5)


def test_cpu_timer_is_torch_benchmark_timer_at_the_run_thread_count():
    """Warm-up calls first, then torch.utils.benchmark.Timer's calls with consecutive indices (input rotation), at
    the thread count set for the run (Timer's own default would be one thread)."""
    calls, threads = [], []

    def fn(i):
        calls.append(i)
        threads.append(torch.get_num_threads())
        sum(range(2000))

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        stats = timing.time_cpu(fn, TimerSettings(warmup_s=0.0, min_warmup=3, rep_s=0.02, max_s=0.2))
    finally:
        torch.set_num_threads(saved)
    assert calls[:3] == [0, 1, 2], "warm-up"
    assert calls[3:] == list(range(len(calls) - 3)), "Timer's calls get consecutive indices"
    assert set(threads) == {2}
    assert stats.samples >= 1 and stats.reps % stats.samples == 0 and stats.reps <= len(calls) - 3
    assert 0 < stats.p20 <= stats.median <= stats.p80


def test_timer_description_says_how_it_timed():
    settings = TimerSettings(warmup_s=0.01, rep_s=0.1, max_s=1.0)
    assert "torch.utils.benchmark.Timer.adaptive_autorange" in timing.describe(CPU, settings)
    gpu = torch.device("cuda")
    assert "L2 flushed before each repetition" in timing.describe(gpu, settings)
    import dataclasses

    assert "L2 not flushed" in timing.describe(gpu, dataclasses.replace(settings, flush_l2=False))


def test_repetitions_fill_the_time_budget_within_bounds():
    s = TimerSettings(rep_s=0.1, min_reps=5, max_reps=50)
    assert timing._rep_count(0.01, s) == 10
    assert timing._rep_count(1.0, s) == 5
    assert timing._rep_count(1e-6, s) == 50
    assert timing._rep_count(0.0, s) == 50


def test_peak_memory_is_none_off_the_gpu():
    assert timing.peak_memory_mb(lambda: torch.ones(10), CPU) is None


# ----------------------------------------------------------------------------------------------- spot-check
def test_relative_error_and_judge():
    t = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    assert check.relative_error(t, t) == 0.0
    assert math.isclose(check.relative_error(t + torch.tensor([0.0, 0.0, 0.4], dtype=torch.float64), t), 0.1)
    assert check.relative_error(t[:2], t) == math.inf
    assert check.relative_error(torch.tensor([1.0, float("nan"), 4.0], dtype=torch.float64), t) == math.inf
    err, worst = check.worst_error([t, t * 1.5], [t, t], ["a", "b"])
    assert worst == "b" and math.isclose(err, 0.5)
    assert check.judge(1e-3, "x", 0.0, "fp32").passed            # under the float32 floor (TF32 on a GPU)
    assert not check.judge(1e-3, "x", 1e-6, "fp32", "cpu").passed  # the CPU has no TF32: a tighter floor
    assert check.judge(5e-5, "x", 1e-6, "fp32", "cpu").passed
    assert not check.judge(0.1, "x", 1e-3, "fp32").passed         # a wrong result
    assert check.judge(0.03, "x", 0.01, "bf16").tolerance == pytest.approx(0.04)
    assert check.judge(0.03, "x", 0.01, "bf16").passed            # 3x the baseline's own bf16 error
    assert not check.judge(float("nan"), "x", 0.0, "fp32").passed


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.5 * g


class _Broken(nn.Module):
    """The baseline's layer with a bug: ``where`` = 'forward' perturbs the output; 'backward' scales gradients."""

    def __init__(self, inner, where):
        super().__init__()
        self.inner, self.where = inner, where

    def forward(self, x):
        out, hidden = self.inner(x)
        if self.where == "forward":
            out = out * 1.01 + 0.01
        else:
            out = _ScaleGrad.apply(out)
        return out, hidden


class _BrokenImpl(impls.Impl):
    def __init__(self, where):
        super().__init__(f"broken-{where}", backend="test")
        self.where = where

    def build(self, baseline):
        import copy

        return _Broken(copy.deepcopy(baseline), self.where)


class _RaisingImpl(impls.Impl):
    def __init__(self):
        super().__init__("raises", backend="test")

    def build(self, baseline):
        raise RuntimeError("kernel launch failed")


def _counting_timer():
    calls = []

    def timer(fn, device, settings):
        calls.append(fn)
        return timing.time_cpu(fn, FAST)

    return timer, calls


SMALL = [BenchConfig("lstm", "fp32", 3, 8, 5, "fwd"), BenchConfig("lstm", "fp32", 3, 8, 5, "fwdbwd")]


def test_wrong_implementations_are_flagged_and_never_timed():
    timer, calls = _counting_timer()
    candidates = [impls.BaselineImpl(CPU), impls.FusedImpl("cpu", variants.Variant("")), _BrokenImpl("forward"),
                  _BrokenImpl("backward"), _RaisingImpl()]
    results = {(r.cfg.mode, r.impl): r for r in run_grid(SMALL, candidates, CPU, FAST, timer=timer)}
    assert len(results) == 2 * len(candidates)
    assert len(calls) == 2 + 2 + 1, "baseline and cpu in both modes, broken-backward only in fwd"
    for mode in ("fwd", "fwdbwd"):
        assert results[(mode, "torch-cpu")].status == "ok" and results[(mode, "torch-cpu")].check == "base"
        assert results[(mode, "cpu")].status == "ok" and results[(mode, "cpu")].check == "pass"
        bad = results[(mode, "broken-forward")]
        assert (bad.status, bad.check, bad.stats, bad.speedup) == ("failed", "fail", None, None)
        assert bad.check_err > bad.check_tol and "worst: " in bad.note
        err = results[(mode, "raises")]
        assert err.status == "error" and "kernel launch failed" in err.note and err.stats is None
    # A backward bug passes the forward check (forward is right) and fails the fwd+bwd one.
    assert results[("fwd", "broken-backward")].status == "ok"
    failed = results[("fwdbwd", "broken-backward")]
    assert failed.status == "failed" and failed.stats is None and "grad" in failed.note


def test_failed_rows_show_as_failed_in_table_and_csv(tmp_path):
    cfg = SMALL[0]
    rows = [Result(cfg, "torch-cpu", "ok", is_baseline=True, check="base", check_err=1e-7,
                   stats=Stats(1.0, 0.9, 1.1, 5), speedup=1.0),
            Result(cfg, "bad", "failed", check="fail", check_err=0.5, check_tol=5e-3, note="worst: output"),
            Result(cfg, "gone", "skipped", note="not built here")]
    table = report.format_table(rows)
    bad_line = next(line for line in table.splitlines() if " bad " in line)
    assert "FAIL" in bad_line and "1.000" not in bad_line
    assert "skipped" in next(line for line in table.splitlines() if "gone" in line)
    path = tmp_path / "r.csv"
    report.write_csv(str(path), rows)
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert [r["status"] for r in back] == ["ok", "failed", "skipped"]
    assert back[1]["median_ms"] == "" and back[1]["check"] == "fail" and back[2]["note"] == "not built here"
    assert back[0]["reps"] == "5" and back[0]["samples"] == "5" and back[0]["config"] == cfg.id


class _NoHalfBaseline(impls.BaselineImpl):
    """A baseline that cannot run float16 (as PyTorch's CPU RNNs could not in older releases)."""

    def build(self, baseline):
        if baseline.weight_hh_l0.dtype == torch.float16:
            raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'")
        return baseline


def test_dtype_the_baseline_cannot_run_is_skipped_with_the_reason():
    timer, calls = _counting_timer()
    cfgs = [BenchConfig("gru", "fp16", 2, 4, 3, "fwd"), BenchConfig("gru", "fp32", 2, 4, 3, "fwd")]
    res = run_grid(cfgs, [_NoHalfBaseline(CPU), impls.FusedImpl("cpu", variants.Variant(""))], CPU, FAST,
                   timer=timer)
    assert [(r.cfg.dtype, r.impl, r.status) for r in res] == [
        ("fp16", "torch-cpu", "skipped"), ("fp16", "cpu", "skipped"),
        ("fp32", "torch-cpu", "ok"), ("fp32", "cpu", "ok")]
    assert all("baseline torch-cpu cannot run" in r.note and "Half" in r.note for r in res[:2])
    assert len(calls) == 2


def test_unavailable_implementation_is_skipped_with_its_reason():
    timer, _ = _counting_timer()
    res = run_grid(SMALL[:1], [impls.BaselineImpl(CPU), impls.FusedImpl("cuda", variants.Variant(""))], CPU, FAST,
                   timer=timer)
    assert res[1].status == "skipped" and "cuda" in res[1].note


def test_time_budget_skips_the_shapes_not_started():
    timer, _ = _counting_timer()
    cfgs = SMALL + [BenchConfig("rnn", "fp32", 2, 4, 3, "fwd")]
    res = run_grid(cfgs, [impls.BaselineImpl(CPU)], CPU, FAST, time_budget_s=0.0, timer=timer)
    assert [r.status for r in res] == ["ok", "ok", "skipped"], "the first shape always runs, modes together"
    assert "time budget" in res[2].note


def test_every_implementation_gets_the_same_weights_inputs_and_upstream():
    cfg = BenchConfig("lstm", "fp32", 2, 6, 4, "fwdbwd", input_size=3)
    w = Workload(cfg, CPU)
    fused = impls.FusedImpl("cpu", variants.Variant("")).build(w.baseline)
    loop = impls.CellLoopImpl().build(w.baseline)
    for m in (fused, loop):
        for p, q in zip(m.parameters(), w.baseline.parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    base = w.call(w.baseline, "fwdbwd", 1)
    for m in (fused, loop):
        for a, b in zip(w.call(m, "fwdbwd", 1), base):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(base) == len(w.tensor_names("fwdbwd")) == 3 + 1 + 4
    assert not torch.equal(w.inputs[0], w.inputs[1]), "the pool rotates distinct inputs"
    again = Workload(cfg, CPU)
    assert torch.equal(again.inputs[1], w.inputs[1]) and torch.equal(again.upstream[0], w.upstream[0])


# ------------------------------------------------------------------------------- registry and variants
def test_discover_lists_the_baseline_and_available_backends():
    found = impls.discover(CPU, [torch.float32], with_cell_loop=True)
    names = [i.name for i in found]
    assert names[0] == "torch-cpu" and found[0].is_baseline
    assert "cpu" in names and "reference" in names and names[-1] == "cell-loop"
    assert "cuda" not in names
    default = [i.name for i in impls.select(found, None)]
    assert "reference" not in default, "the reference is slow: only on request"
    assert [i.name for i in impls.select(found, ["reference"])] == ["torch-cpu", "reference"]
    assert "reference" in [i.name for i in impls.select(found, None, also=["reference"])]
    with pytest.raises(ValueError, match="'cuda'.*cannot be measured here"):
        impls.select(found, ["cuda"], CPU)
    with pytest.raises(ValueError, match="available: torch-cpu"):
        impls.select(found, ["nope"])


class _EnvProbe(nn.Module):
    """The baseline's layer, recording the switch's value at every call."""

    seen = []

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        _EnvProbe.seen.append(os.environ.get("RNNFUSED_BENCH_TEST_SWITCH"))
        return self.inner(x)


def test_a_variant_row_adds_a_named_path_whose_switch_is_set_while_it_runs(monkeypatch):
    monkeypatch.delenv("RNNFUSED_BENCH_TEST_SWITCH", raising=False)
    monkeypatch.setitem(variants.VARIANTS, "cpu", [
        variants.Variant("a", {"RNNFUSED_BENCH_TEST_SWITCH": "a"}, "path a"),
        variants.Variant("b", {"RNNFUSED_BENCH_TEST_SWITCH": "b"}, "path b")])
    found = impls.discover(CPU, [torch.float32])
    fused_cpu = [i for i in found if isinstance(i, impls.FusedImpl) and i.backend == "cpu"]
    assert [i.name for i in fused_cpu] == ["cpu:a", "cpu:b"]
    assert [i.name for i in impls.select(found, ["cpu"])] == ["torch-cpu", "cpu:a", "cpu:b"]
    assert [i.name for i in impls.select(found, ["cpu:b"])] == ["torch-cpu", "cpu:b"]

    class Probe(impls.Impl):
        def build(self, baseline):
            return _EnvProbe(baseline)

    probes = [impls.BaselineImpl(CPU)] + [Probe(i.name, env=i.env) for i in fused_cpu]
    _EnvProbe.seen.clear()
    res = run_grid(SMALL[:1], probes, CPU, FAST)
    assert [r.status for r in res] == ["ok", "ok", "ok"]
    assert set(_EnvProbe.seen) == {"a", "b"}
    assert _EnvProbe.seen.index("b") > max(i for i, v in enumerate(_EnvProbe.seen) if v == "a")
    assert "RNNFUSED_BENCH_TEST_SWITCH" not in os.environ, "the switch is restored after the variant ran"


def test_variant_table_names_the_switches_the_backends_read():
    """Each row's switches exist in rnnfused (a renamed switch would silently time the automatic path), and
    names are unique per backend."""
    from rnnfused import _cuda

    known = {"cuda": {_cuda.PATH_ENV_VAR, _cuda.GRAPHS_ENV_VAR, _cuda.TUNING_ENV_VAR}}
    try:
        from rnnfused._triton import dispatch
    except ImportError:  # no triton here: its switch cannot be checked
        pass
    else:
        known["triton"] = {dispatch.PATH_ENV}
    for backend, rows in variants.VARIANTS.items():
        names = [v.name for v in rows]
        assert len(names) == len(set(names)), backend
        assert all(v.description for v in rows), backend
        if backend in known:
            assert {k for v in rows for k in v.env} == known[backend], backend
    assert variants.variants_for("cpu") == [variants.Variant()]


def test_cuda_table_has_an_opt_in_row_per_persistent_synchronisation_variant():
    from rnnfused import _cuda

    rows = variants.variants_for("cuda")
    assert [v.name for v in rows if not v.opt_in] == ["", "stepwise", "graphs", "persistent"]
    opt_in = [v for v in rows if v.opt_in]
    assert [v.name for v in opt_in] == [f"persistent-{t}" for t in _cuda.PERSISTENT_VARIANTS]
    for v, tuning in zip(opt_in, _cuda.PERSISTENT_VARIANTS):
        assert v.env == {_cuda.GRAPHS_ENV_VAR: "0", _cuda.PATH_ENV_VAR: "persistent", _cuda.TUNING_ENV_VAR: tuning}


def test_opt_in_rows_run_only_when_named_or_matched_by_a_pattern(monkeypatch):
    monkeypatch.setitem(variants.VARIANTS, "cpu", [
        variants.Variant("", {}, "auto"),
        variants.Variant("sync-a", {"RNNFUSED_BENCH_TEST_SWITCH": "a"}, "a", opt_in=True),
        variants.Variant("sync-b", {"RNNFUSED_BENCH_TEST_SWITCH": "b"}, "b", opt_in=True)])
    found = impls.discover(CPU, [torch.float32])
    assert [i.name for i in found if isinstance(i, impls.FusedImpl) and i.backend == "cpu"] == \
        ["cpu", "cpu:sync-a", "cpu:sync-b"]
    names = lambda wanted: [i.name for i in impls.select(found, wanted, CPU)]  # noqa: E731
    assert names(None) == ["torch-cpu", "cpu"], "not in a default run"
    assert names(["cpu"]) == ["torch-cpu", "cpu"], "nor selected by the backend's name"
    assert names(["cpu:sync-b"]) == ["torch-cpu", "cpu:sync-b"]
    assert names(["cpu:sync-*"]) == ["torch-cpu", "cpu:sync-a", "cpu:sync-b"]
    assert names(["cpu:*"]) == ["torch-cpu", "cpu:sync-a", "cpu:sync-b"]
    with pytest.raises(ValueError, match="'cuda:sync-\\*' cannot be measured here"):
        impls.select(found, ["cuda:sync-*"], CPU)


def test_feature_rows_are_opt_in_timed_and_not_compared_with_nn(tmp_path):
    """cpu+resets1% / cpu+zoneout0.1 / cpu+weightdrop0.1 / cpu+layernorm: only when asked for, skipped where the
    feature does not apply (zoneout or LayerNorm on an Elman RNN, resets with packed input), timed without the
    spot-check against nn.*."""
    found = impls.discover(CPU, [torch.float32])
    feature_names = ["cpu+resets1%", "cpu+zoneout0.1", "cpu+weightdrop0.1", "cpu+layernorm"]
    assert [i.name for i in found if isinstance(i, impls.FeatureImpl) and i.backend == "cpu"] == feature_names
    assert not set(feature_names) & {i.name for i in impls.select(found, None)}
    assert [i.name for i in impls.select(found, ["cpu+*"], CPU)] == ["torch-cpu"] + feature_names
    out = tmp_path / "o"
    assert cli.main(["--device", "cpu", "--quick", "--cells", "gru,rnn", "--batch", "3", "--hidden", "6",
                     "--seq", "5", "--modes", "fwdbwd", "--impls", "cpu,cpu+*", "--out", str(out), "--quiet",
                     "--no-plots", "--rep-ms", "1", "--warmup-ms", "0", "--strict"]) == 0
    rows = {(r["cell"], r["impl"]): r for r in report.read_csv(str(out / "results.csv"))}
    assert rows["gru", "cpu"]["check"] == "pass"
    for name in feature_names:
        assert rows["gru", name]["status"] == "ok" and rows["gru", name]["check"] == "", name
    assert rows["rnn", "cpu+zoneout0.1"]["status"] == rows["rnn", "cpu+layernorm"]["status"] == "skipped"
    assert "LSTM" in rows["rnn", "cpu+zoneout0.1"]["note"] or "lstm" in rows["rnn", "cpu+zoneout0.1"]["note"]
    # The resets row really passes resets: a module that records them.
    from benchmarks.features import RESET_DENSITY, FeatureModule

    seen = []

    class Probe(nn.Module):
        batch_first = False

        def forward(self, x, resets=None):
            seen.append(resets)
            return x, None

    FeatureModule(Probe(), resets=True)(torch.zeros(400, 50, 1))
    assert seen[0].shape == (400, 50) and seen[0].dtype == torch.bool
    assert 0.5 * RESET_DENSITY < seen[0].float().mean().item() < 2 * RESET_DENSITY


def test_patched_env_restores_previous_values(monkeypatch):
    monkeypatch.setenv("RNNFUSED_BENCH_A", "old")
    monkeypatch.delenv("RNNFUSED_BENCH_B", raising=False)
    with variants.patched_env({"RNNFUSED_BENCH_A": "new", "RNNFUSED_BENCH_B": "set"}):
        assert os.environ["RNNFUSED_BENCH_A"] == "new" and os.environ["RNNFUSED_BENCH_B"] == "set"
    assert os.environ["RNNFUSED_BENCH_A"] == "old" and "RNNFUSED_BENCH_B" not in os.environ


# ----------------------------------------------------------------------------------------- presets and CLI
def _shapes(configs):
    return {(c.cell, c.dtype, c.batch, c.hidden, c.seq_len) for c in configs}


@pytest.mark.parametrize("device_type", ["cuda", "cpu"])
@pytest.mark.parametrize("name", ["default", "full"])
def test_default_and_full_presets_have_packed_variable_lengths(device_type, name):
    configs = presets.expand(presets.preset(device_type, name).blocks)
    var = [c for c in configs if c.lengths == "var"]
    assert var and {c.cell for c in var} >= {"lstm", "gru"} and {c.mode for c in var} == {"fwd", "fwdbwd"}
    assert all(c.id.endswith(("-var-fwd", "-var-fwdbwd")) for c in var)


def test_gpu_full_preset_holds_the_headline_configs_in_both_modes_and_fits_its_budget():
    full = presets.preset("cuda", "full")
    configs = presets.expand(full.blocks)
    want = {("lstm", "fp16", 16, 768, 1024), ("lstm", "bf16", 8, 1024, 512), ("gru", "bf16", 16, 768, 1024),
            ("lstm", "fp32", 64, 512, 512)}
    want |= set(itertools.product(("lstm", "gru"), ("bf16", "fp32"), (8, 64), (256, 1024), (512,)))
    assert want <= _shapes(configs)
    for shape in want:
        assert {c.mode for c in configs if (c.cell, c.dtype, c.batch, c.hidden, c.seq_len) == shape} == {"fwd",
                                                                                                        "fwdbwd"}
    assert _shapes(configs[:8]) == {("lstm", "fp16", 16, 768, 1024), ("lstm", "bf16", 8, 1024, 512),
                                    ("gru", "bf16", 16, 768, 1024), ("lstm", "fp32", 64, 512, 512)}, "headline first"
    assert len({c.shape_key for c in configs}) <= 90 and full.time_budget_s is not None and full.time_budget_s <= 560


def test_cpu_quick_preset_is_small_and_fp32():
    configs = presets.expand(presets.preset("cpu", "quick").blocks)
    assert {c.dtype for c in configs} == {"fp32"} and {c.cell for c in configs} == {"lstm", "gru", "rnn"}
    assert len(configs) <= 30 and max(c.hidden for c in configs) <= 128


def test_axis_flags_replace_preset_axes_and_drop_duplicates():
    blocks = presets.preset("cpu", "quick").blocks
    configs = presets.expand(blocks, cells=["gru"], hiddens=[5], seqs=[3], modes=["fwd"])
    assert [c.id for c in configs] == ["gru-fp32-B8-H5-T3-fwd", "gru-fp32-B2-H5-T3-fwd"]
    configs = presets.expand(blocks, batches=[2], hiddens=[4], input_size=3, layers=2, bidirectional=True)
    assert {c.id for c in configs} >= {"lstm-fp32-B2-H4-T32-I3-L2-bi-fwd"}


def test_cli_list_and_bad_arguments(capsys):
    assert cli.main(["--quick", "--cells", "rnn", "--hidden", "7", "--modes", "fwdbwd", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["  rnn-fp32-B8-H7-T32-fwdbwd", "  rnn-fp32-B2-H7-T32-fwdbwd"]
    with pytest.raises(SystemExit):
        cli.main(["--cells", "transformer", "--list"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="cuda"):
            cli.main(["--quick", "--impls", "cuda", "--list"])
    with pytest.raises(SystemExit):
        cli.main(["--dtypes", "int8", "--list"])
    with pytest.raises(SystemExit):
        cli.main(["--preset", "nope", "--list"])
    with pytest.raises(SystemExit):
        cli.main(["--quick", "--full", "--list"])


def test_cli_cell_loop_and_custom_sizes_run(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["--device", "cpu", "--quick", "--cells", "lstm", "--batch", "2", "--hidden", "6", "--seq", "3",
                     "--with-cell-loop", "--impls", "cpu", "--out", str(out), "--quiet", "--no-plots",
                     "--rep-ms", "1", "--warmup-ms", "0", "--strict"]) == 0
    rows = report.read_csv(str(out / "results.csv"))
    assert [(r["impl"], r["status"]) for r in rows] == [("torch-cpu", "ok"), ("cpu", "ok"), ("cell-loop", "ok")] * 2
    assert not list(out.glob("*.png"))


def test_cli_packed_variable_lengths_run_and_are_checked(tmp_path):
    out = tmp_path / "v"
    assert cli.main(["--device", "cpu", "--preset", "default", "--cells", "lstm,gru", "--dtypes", "fp32",
                     "--batch", "3", "--hidden", "5", "--seq", "8", "--lengths", "var", "--impls", "cpu",
                     "--with-cell-loop", "--out", str(out), "--quiet", "--no-plots", "--rep-ms", "1",
                     "--warmup-ms", "0", "--strict"]) == 0
    rows = report.read_csv(str(out / "results.csv"))
    assert {r["config"] for r in rows} == {f"{c}-fp32-B3-H5-T8-var-{m}" for c in ("lstm", "gru")
                                           for m in ("fwd", "fwdbwd")}
    assert {r["lengths"] for r in rows} == {"var"}
    for r in rows:
        if r["impl"] == "cell-loop":
            assert r["status"] == "skipped" and "PackedSequence" in r["note"]
        else:
            assert r["status"] == "ok" and r["check"] in ("base", "pass"), r


def test_packed_workload_draws_seeded_lengths_in_range_and_feeds_every_impl_the_same():
    from torch.nn.utils.rnn import PackedSequence

    from benchmarks.workload import draw_lengths

    for T in (1, 3, 8, 100):
        lengths = draw_lengths(T, 64)
        assert lengths.dtype == torch.int64 and int(lengths.min()) >= max(1, math.ceil(T / 4))
        assert int(lengths.max()) <= T and torch.equal(lengths, draw_lengths(T, 64))
    assert len(set(draw_lengths(100, 64).tolist())) > 10, "drawn, not constant"
    cfg = BenchConfig("gru", "fp32", 5, 6, 9, "fwdbwd", input_size=3, bidirectional=True, lengths="var")
    w = Workload(cfg, CPU)
    x = w.inputs[0]
    assert isinstance(x, PackedSequence) and x.data.requires_grad and x.data.shape == (int(w.lengths.sum()), 3)
    assert w.upstream[0].shape == (int(w.lengths.sum()), 12)
    fused = impls.FusedImpl("cpu").build(w.baseline)
    base = w.call(w.baseline, "fwdbwd", 1)
    got = w.call(fused, "fwdbwd", 1)
    assert got[0].shape == (int(w.lengths.sum()), 12) and got[2].shape == x.data.shape
    for a, b in zip(got, base):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    err, _ = w.error_vs_truth(fused, "fwdbwd")
    assert err < 1e-4


def test_progress_is_a_bar_on_a_terminal_and_sparse_lines_in_logs():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    log = io.StringIO()
    p = Progress(100, stream=log)
    for i in range(100):
        p.advance(f"cfg{i}", done=0)
        p.advance(f"cfg{i}")
    p.finish()
    lines = log.getvalue().splitlines()
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("[bench] 100/100 (100%)")
    tty = Tty()
    p = Progress(4, stream=tty)
    for i in range(4):
        p.advance(f"cfg{i}")
    p.finish()
    text = tty.getvalue()
    assert text.count("\r") == 4 and "[########################] 4/4" in text and text.endswith("\n")
    quiet = io.StringIO()
    Progress(3, stream=quiet, enabled=False).advance("x")
    assert quiet.getvalue() == ""


def test_plots_skip_groups_without_a_sweep(tmp_path):
    cfg = SMALL[0]
    one_point = [Result(cfg, "torch-cpu", "ok", stats=Stats(1.0, 1.0, 1.0, 3))]
    assert plots.write_plots(one_point, str(tmp_path)) == []


# ------------------------------------------------------------------------------------------------ GPU paths
@requires_cuda
def test_cuda_event_timer_and_peak_memory():
    dev = torch.device("cuda")
    a = torch.randn(1024, 1024, device=dev)
    for flush in (True, False):
        stats = timing.time_cuda(lambda i: a @ a, TimerSettings(warmup_s=0.01, rep_s=0.02, min_reps=5,
                                                                flush_l2=flush))
        assert stats.reps >= 5 and 0 < stats.p20 <= stats.median <= stats.p80
    assert timing.time_fn(lambda i: a @ a, dev, FAST).reps == 3
    peak = timing.peak_memory_mb(lambda: torch.empty(64 * 2**20, dtype=torch.uint8, device=dev), dev)
    assert peak >= 64


@requires_cuda
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_cudnn_baseline_and_fused_backends_on_gpu(dtype):
    dev = torch.device("cuda")
    cfgs = [BenchConfig(cell, dtype, 8, 64, 16, mode) for cell in ("lstm", "gru", "rnn") for mode in ("fwd",
                                                                                                       "fwdbwd")]
    found = impls.select(impls.discover(dev, [cfgs[0].torch_dtype]), None)
    assert found[0].name == "cudnn"
    assert Workload(cfgs[0], dev).baseline.weight_hh_l0.is_cuda
    res = run_grid(cfgs, found, dev, TimerSettings(warmup_s=0.0, rep_s=0.005, min_reps=3, max_reps=10))
    for r in res:
        assert r.status in ("ok", "skipped"), (r.cfg.id, r.impl, r.status, r.check_err, r.check_tol, r.note)
        if r.impl == "cudnn":
            assert r.status == "ok" and r.peak_mb is not None and r.peak_mb > 0
        if r.status == "ok":
            assert r.stats.median > 0 and r.peak_mb is not None


def test_cell_loop_subcommand_writes_a_plain_csv_and_metadata(tmp_path):
    """``python -m benchmarks cells``: every config is checked against nn.*Cell and timed; cells.csv reads with
    csv.DictReader as is (no comment lines), the run's environment goes to cells_metadata.json."""
    from benchmarks import cell_loop

    # the first config in a worker process (the default), the second in this one
    for cell, isolate, out in (("lstm", "--isolate", tmp_path / "a"), ("rnn", "--no-isolate", tmp_path / "b")):
        rc = cell_loop.main(["--cells", cell, "--dtypes", "fp64", "--batch", "2", "--hidden", "3", "--steps", "2",
                             "--rounds", "1", "--rep-ms", "1", isolate, "--out", str(out)])
        assert rc == 0
        with open(out / "cells.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(r["cell"], r["mode"], r["status"]) for r in rows] == [(cell, "fwd", "ok"), (cell, "fwdbwd", "ok")]
        assert all(float(r["nn_ms"]) > 0 and float(r["fused_ms"]) > 0 for r in rows)
        meta = json.loads((out / "cells_metadata.json").read_text())
        assert meta["command"].startswith("python -m benchmarks cells") and "torch" in meta and "timer" in meta
        assert ("fresh" in meta["isolation"]) == (isolate == "--isolate")
