"""The benchmark suite (benchmarks/): the --quick run end to end, its statistics, spot-check, implementation
registry, presets and reports; GPU code paths (CUDA-event timer, peak memory, cuDNN baseline, bf16/fp16) on a GPU.
Timing never decides a result here: only that measurements exist and are well-formed."""
import io
import itertools
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

    meta, rows = report.read_csv(str(out / "results.csv"))
    for key in ("device", "torch", "cuda", "cudnn", "triton", "git_commit", "date", "command"):
        assert meta.get(key), f"metadata {key} missing"
    assert "--quick" in meta["command"]
    assert list(rows[0]) == report.CSV_COLUMNS
    names = meta["implementations"].split(", ")
    assert names[0] == impls.baseline_name(device)
    assert len(rows) == len(configs) * len(names)
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
        assert int(r["reps"]) >= 5
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


def test_cpu_timer_warms_up_then_times_the_requested_repetitions():
    calls = []
    settings = TimerSettings(warmup_s=0.0, rep_s=0.0, min_warmup=3, min_reps=7, max_reps=7)
    stats = timing.time_cpu(calls.append, settings)
    assert stats.reps == 7 and len(calls) == 3 + 7
    assert calls[3:] == list(range(7)), "timed repetitions get their index (input rotation)"
    assert 0 <= stats.p20 <= stats.median <= stats.p80


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
    report.write_csv(str(path), rows, {"device": "cpu"}, report.csv_notes("torch-cpu", False))
    meta, back = report.read_csv(str(path))
    assert meta == {"device": "cpu"}, "column notes are not metadata"
    assert [r["status"] for r in back] == ["ok", "failed", "skipped"]
    assert back[1]["median_ms"] == "" and back[1]["check"] == "fail"


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


def test_variant_provider_adds_named_paths_whose_switch_is_set_while_they_run(monkeypatch):
    monkeypatch.setattr(variants, "_REGISTERED", [])
    monkeypatch.delenv("RNNFUSED_BENCH_TEST_SWITCH", raising=False)

    @variants.register_variant_provider
    def provider(backend, device):
        if backend != "cpu":
            return None
        return [variants.Variant("a", {"RNNFUSED_BENCH_TEST_SWITCH": "a"}),
                {"name": "b", "env": {"RNNFUSED_BENCH_TEST_SWITCH": "b"}, "description": "path b"}]

    found = impls.discover(CPU, [torch.float32])
    assert [i.name for i in found if i.backend == "cpu"] == ["cpu:a", "cpu:b"]
    assert [i.name for i in impls.select(found, ["cpu"])] == ["torch-cpu", "cpu:a", "cpu:b"]

    class Probe(impls.Impl):
        def build(self, baseline):
            return _EnvProbe(baseline)

    probes = [impls.BaselineImpl(CPU)] + [Probe(i.name, env=i.env) for i in found if i.backend == "cpu"]
    _EnvProbe.seen.clear()
    res = run_grid(SMALL[:1], probes, CPU, FAST)
    assert [r.status for r in res] == ["ok", "ok", "ok"]
    assert set(_EnvProbe.seen) == {"a", "b"}
    assert _EnvProbe.seen.index("b") > max(i for i, v in enumerate(_EnvProbe.seen) if v == "a")
    assert "RNNFUSED_BENCH_TEST_SWITCH" not in os.environ, "the switch is restored after the variant ran"


def test_backend_hook_takes_precedence_over_providers(monkeypatch):
    from rnnfused.backends import get_backend

    backend = get_backend("cpu", CPU, torch.float32)
    monkeypatch.setattr(backend, "benchmark_variants",
                        lambda device: [{"name": "hooked", "env": {"X": "1"}}], raising=False)
    monkeypatch.setattr(variants, "_REGISTERED", [lambda b, d: [variants.Variant("provided")]])
    assert [i.name for i in impls.discover(CPU) if i.backend == "cpu"] == ["cpu:hooked"]


def provider_from_env(backend, device):
    return [variants.Variant("viaenv")] if backend == "cpu" else None


def test_providers_named_in_the_environment_are_imported(monkeypatch):
    monkeypatch.setenv(variants.PROVIDERS_ENV, f"{__name__}:provider_from_env")
    monkeypatch.setattr(variants, "_REGISTERED", [])
    assert [i.name for i in impls.discover(CPU) if i.backend == "cpu"] == ["cpu:viaenv"]
    monkeypatch.setenv(variants.PROVIDERS_ENV, "no_colon_here")
    with pytest.raises(ValueError, match="package.module:function"):
        impls.discover(CPU)


def test_duplicate_variant_names_are_an_error(monkeypatch):
    monkeypatch.setattr(variants, "_REGISTERED", [lambda b, d: [variants.Variant("x"), variants.Variant("x")]])
    with pytest.raises(ValueError, match="twice"):
        variants.variants_for("cpu", CPU)


def test_builtin_providers_only_answer_for_their_backend():
    for provider in variants.BUILTIN_PROVIDERS:
        assert provider("cpu", CPU) is None and provider("reference", CPU) is None


def test_patched_env_restores_previous_values(monkeypatch):
    monkeypatch.setenv("RNNFUSED_BENCH_A", "old")
    monkeypatch.delenv("RNNFUSED_BENCH_B", raising=False)
    with variants.patched_env({"RNNFUSED_BENCH_A": "new", "RNNFUSED_BENCH_B": "set"}):
        assert os.environ["RNNFUSED_BENCH_A"] == "new" and os.environ["RNNFUSED_BENCH_B"] == "set"
    assert os.environ["RNNFUSED_BENCH_A"] == "old" and "RNNFUSED_BENCH_B" not in os.environ


# ----------------------------------------------------------------------------------------- presets and CLI
def _shapes(configs):
    return {(c.cell, c.dtype, c.batch, c.hidden, c.seq_len) for c in configs}


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
    assert len(_shapes(configs)) <= 80 and full.time_budget_s is not None and full.time_budget_s <= 560


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


def test_cli_cell_loop_and_custom_sizes_run(tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["--device", "cpu", "--quick", "--cells", "lstm", "--batch", "2", "--hidden", "6", "--seq", "3",
                     "--with-cell-loop", "--impls", "cpu", "--out", str(out), "--quiet", "--no-plots",
                     "--rep-ms", "1", "--warmup-ms", "0", "--strict"]) == 0
    _, rows = report.read_csv(str(out / "results.csv"))
    assert [(r["impl"], r["status"]) for r in rows] == [("torch-cpu", "ok"), ("cpu", "ok"), ("cell-loop", "ok")] * 2
    assert not list(out.glob("*.png"))


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
    stats = timing.time_cuda(lambda i: a @ a, TimerSettings(warmup_s=0.01, rep_s=0.02, min_reps=5))
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
