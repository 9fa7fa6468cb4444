"""GPU readiness of the Triton backend, shown without a GPU.

    autotuning    tests run with fixed configs; never timed while a CUDA stream captures; tuned once per shape
                  family and cached on disk (keyed by GPU, Triton and rnnfused versions; atomic; bad files are misses)
    persistent    launched cooperatively (the launch keyword, the compiled metadata: test_triton_compile.py); the
                  grid barrier gives up after a bounded spin and the next launch raises (run in the interpreter with
                  two programs, which it runs one after another: the first one can only stall)
    device guard  every kernel launch and config lookup (where tuning times kernels) runs inside the guard of the
                  tensors' device
    lengths       accepted already on the input's device, then not value-checked (meta tensors stand in for a GPU)
The GPU halves of these (real streams, two devices, graph capture) are in test_triton_backend.py.
"""
import contextlib
import json
import os

import pytest
import torch

from rnnfused._cells import CELL_KINDS

from helpers import Case, make_inputs, run_backend, tensor_fields, triton_interpret

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(not triton_interpret, reason="CPU-side checks of the Triton backend (interpreter)")

if triton_interpret:
    import triton
    import triton.language as tl

    from rnnfused._triton import backward_launch, barrier, config_cache, configs, forward_launch, launch_common
    from rnnfused._validation import check_op_lengths as _check_lengths


# ------------------------------------------------------------------------------------------------- 1. autotuning
KEY = ("forward", "persistent", "lstm", "torch.bfloat16", 8, 256, 256, "Fake GPU 80GB")


def _recorder(fastest=None):
    calls = []

    def time_config(cfg):
        calls.append(cfg)
        return 1.0 if cfg == fastest else 2.0 + len(calls)

    return calls, time_config


@pytest.fixture
def tuning(monkeypatch, tmp_path):
    """Tuning on, the disk cache in a fresh directory, an empty memory cache."""
    monkeypatch.setenv(configs.AUTOTUNE_ENV, "1")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    return tmp_path


def _get(key=KEY, can_time=True, time_config=None):
    return configs.get_config(key, "persistent", 8, 256, 256, interpreted=False, can_time=can_time,
                              time_config=time_config)


def test_the_test_session_runs_with_fixed_configs(monkeypatch):
    """tests/conftest.py sets RNNFUSED_TRITON_AUTOTUNE=0: even where timing is possible, nothing is timed."""
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    assert os.environ.get(configs.AUTOTUNE_ENV) == "0" and not configs.autotune_enabled()
    calls, time_config = _recorder()
    cfg = _get(time_config=time_config)
    assert calls == [] and cfg == configs.heuristic_config("persistent", 8, 256, 256, interpreted=False)


def test_never_tunes_while_a_cuda_stream_is_capturing(tuning, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    calls, time_config = _recorder()
    cfg = _get(time_config=time_config)
    assert calls == [], "timing synchronizes: it must not run inside torch.cuda.graph capture"
    assert cfg == configs.heuristic_config("persistent", 8, 256, 256, interpreted=False)
    assert configs.CONFIG_CACHE == {}, "the capture-time fallback must not be remembered (tune on the next call)"
    assert not os.path.exists(config_cache.cache_file(KEY[-1]))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    _get(time_config=time_config)
    assert len(calls) == len(configs.candidate_configs("persistent", 8, 256, 256))


def test_tunes_once_per_shape_family_and_reads_the_disk_cache_later(tuning, monkeypatch):
    candidates = configs.candidate_configs("persistent", 8, 256, 256)
    assert 1 < len(candidates) <= 8
    calls, time_config = _recorder(fastest=candidates[-1])
    assert _get(time_config=time_config) == candidates[-1] and len(calls) == len(candidates)
    assert _get(time_config=time_config) == candidates[-1] and len(calls) == len(candidates)  # memory cache
    path = config_cache.cache_file(KEY[-1])
    assert path.startswith(str(tuning)) and os.path.isfile(path)
    stored = json.load(open(path))["configs"]
    c = candidates[-1]
    assert stored == {"|".join(map(str, KEY)): [c.block_b, c.block_h, c.block_k, c.num_warps, c.num_stages]}
    # A new process: empty memory cache, the disk answers, nothing is timed.
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    assert _get(time_config=lambda cfg: pytest.fail("timed although the disk cache has the family")) == c
    # Tracing (cannot time) also reads the disk cache; another shape family is tuned on its own.
    monkeypatch.setattr(configs, "CONFIG_CACHE", {})
    assert _get(can_time=False) == c
    other = KEY[:5] + (512,) + KEY[6:]
    calls2, time_config2 = _recorder()
    configs.get_config(other, "persistent", 8, 512, 256, False, True, time_config2)
    assert calls2 and len(json.load(open(path))["configs"]) == 2


def test_the_cache_file_is_per_gpu_triton_and_rnnfused_version(tuning, monkeypatch):
    from rnnfused import version

    a, b = config_cache.cache_file("NVIDIA H100 80GB HBM3"), config_cache.cache_file("NVIDIA H200")
    assert a != b and triton.__version__ in a and version.__version__ in a
    assert os.path.dirname(a) == os.path.join(str(tuning), "rnnfused")
    monkeypatch.setattr(version, "__version__", "99.0")
    assert config_cache.cache_file("NVIDIA H200") != b
    monkeypatch.setattr(triton, "__version__", "9.9.9")
    assert "9.9.9" in config_cache.cache_file("NVIDIA H200")


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]", '{"format": 1, "configs": []}',
                                     '{"format": 2, "configs": {}}', "BAD_ENTRY", "\x00\xff"],
                         ids=["truncated", "empty", "list", "configs-list", "other-format", "illegal-entry",
                              "binary"])
def test_a_bad_cache_file_is_a_miss_never_a_crash(tuning, content):
    path = config_cache.cache_file(KEY[-1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if content == "BAD_ENTRY":  # well-formed, but not a candidate config of the family (or not ints)
        content = json.dumps({"format": 1, "configs": {"|".join(map(str, KEY)): [7, 7, 7, 7, 7],
                                                       "x": "y"}})
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(content)
    calls, time_config = _recorder()
    cfg = _get(time_config=time_config)
    assert calls and cfg in configs.candidate_configs("persistent", 8, 256, 256)
    assert json.load(open(path))["format"] == 1  # rewritten whole


def test_an_unwritable_cache_warns_once_and_keeps_the_config(tuning, monkeypatch):
    blocker = tuning / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(blocker))
    monkeypatch.setattr(config_cache, "_write_warned", False)
    calls, time_config = _recorder()
    with pytest.warns(RuntimeWarning, match="config cache"):
        cfg = _get(time_config=time_config)
    assert configs.CONFIG_CACHE[KEY] == cfg


def test_writes_are_atomic_and_leave_no_temporary_files(tuning):
    for i in range(3):
        config_cache.store(f"entry{i}", "Fake GPU", (16, 16, 32, 4, 2))
    folder = os.path.dirname(config_cache.cache_file("Fake GPU"))
    assert os.listdir(folder) == [os.path.basename(config_cache.cache_file("Fake GPU"))]
    assert config_cache.load("entry2", "Fake GPU") == (16, 16, 32, 4, 2)


def test_tuning_skips_configs_that_fail_but_never_hides_a_barrier_stall(tuning):
    candidates = configs.candidate_configs("persistent", 8, 256, 256)

    def time_config(cfg):
        if cfg == candidates[0]:
            raise RuntimeError("out of resources")  # e.g. too much shared memory: not a candidate
        return 1.0

    assert _get(time_config=time_config) == candidates[1]
    configs.CONFIG_CACHE.clear()
    os.remove(config_cache.cache_file(KEY[-1]))

    def stalls(cfg):
        raise barrier.BarrierStall("a persistent kernel gave up")

    with pytest.raises(barrier.BarrierStall):
        _get(time_config=stalls)


def test_the_autotune_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv(configs.AUTOTUNE_ENV, "fast")
    with pytest.raises(ValueError, match="RNNFUSED_TRITON_AUTOTUNE"):
        configs.autotune_enabled()
    for value, on in (("1", True), ("on", True), ("0", False), ("off", False)):
        monkeypatch.setenv(configs.AUTOTUNE_ENV, value)
        assert configs.autotune_enabled() is on


# ------------------------------------------------------------------------------------------- 3. the device guard
class _Recorder:
    """Stands in for launch_common.device_guard and for the kernels: records whether each launch ran inside the
    guard of the tensors' device, and each launch's keywords."""

    def __init__(self):
        self.active = []     # devices of the guards entered, innermost last
        self.launches = []   # (name, device guarded or None, tensor device, kwargs)

    @contextlib.contextmanager
    def guard(self, device):
        self.active.append(device)
        try:
            yield
        finally:
            self.active.pop()

    def kernel(self, name, real):
        rec = self

        class Launcher:
            def __getitem__(self, grid):
                def launch(*args, **kwargs):
                    dev = next(a.device for a in args if isinstance(a, torch.Tensor))
                    rec.launches.append((name, rec.active[-1] if rec.active else None, dev, kwargs))
                    return real[grid](*args, **kwargs)

                return launch

        return Launcher()

    def wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            dev = next(a.device for a in args if isinstance(a, torch.Tensor))
            self.launches.append((name, self.active[-1] if self.active else None, dev, kwargs))
            return fn(*args, **kwargs)

        return wrapped


@pytest.fixture
def recorder(monkeypatch):
    rec = _Recorder()
    for module, names in ((forward_launch, ("forward_step_kernel", "forward_persistent_kernel")),
                          (backward_launch, ("backward_step_kernel", "backward_persistent_kernel"))):
        monkeypatch.setattr(module, "device_guard", rec.guard)
        monkeypatch.setattr(module, "lookup_config", rec.wrap("lookup_config", module.lookup_config))
        for name in names:  # the persistent ones are passed on to launch_common.launch_persistent
            monkeypatch.setattr(module, name, rec.kernel(name, getattr(module, name)))
    return rec


@pytest.mark.parametrize("case,path", [(Case("lstm", B=2, T=3, I=3, H=5, lengths=(3, 1)), "step"),
                                       (Case("lstm", B=2, T=2, I=3, H=5, proj=2, reverse=True), "step"),
                                       (Case("gru", B=2, T=2, I=3, H=5, lengths=(2, 1)), "persistent")],
                         ids=lambda v: v.id if isinstance(v, Case) else v)
def test_every_launch_and_config_lookup_runs_inside_the_device_guard(case, path, recorder, monkeypatch):
    """...and the persistent kernels launch cooperatively, the per-step ones plainly."""
    monkeypatch.setenv("RNNFUSED_TRITON_PATH", path)
    x = make_inputs(case)
    outs = run_backend(case.kind, x, "triton")
    torch.autograd.grad(outs, [t for _, t in tensor_fields(x)], [torch.ones_like(o) for o in outs])
    launched = {name for name, *_ in recorder.launches}
    assert launched == {f"forward_{path}_kernel", f"backward_{path}_kernel", "lookup_config"}
    for name, guarded, device, kwargs in recorder.launches:
        assert guarded == device, f"{name} ran outside the guard of its tensors' device ({guarded} vs {device})"
        if name.endswith("kernel"):
            assert kwargs.get("launch_cooperative_grid", False) == (path == "persistent"), (name, kwargs)


def test_the_guard_of_a_cuda_tensor_is_torch_cuda_device_of_its_index():
    guard = launch_common.device_guard(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(launch_common.device_guard(torch.device("cpu")), contextlib.nullcontext)


# ------------------------------------------------------------------------------ 2. the bounded grid barrier
if triton_interpret:
    @triton.jit
    def _barrier_probe(counter_ptr, stall_ptr, spin_limit, ok_ptr):
        ok = barrier.grid_barrier(counter_ptr, tl.num_programs(0), stall_ptr, spin_limit, 7)
        tl.store(ok_ptr + tl.program_id(0), ok.to(tl.int32))


@pytest.fixture
def stall_record(monkeypatch):
    rec = torch.zeros(barrier.STALL_WORDS, dtype=torch.int32)
    monkeypatch.setitem(barrier._RECORDS, "cpu", rec)
    return rec


def test_the_barrier_gives_up_after_its_spin_limit_and_records_where(stall_record):
    """The interpreter runs program 0 to completion before program 1 starts: program 0 can only wait in vain —
    the situation of a program that is not resident. Unbounded, this test would hang."""
    counter = torch.zeros(2, dtype=torch.int32)
    ok = torch.full((2,), -1, dtype=torch.int32)
    _barrier_probe[(2,)](counter, stall_record, 50, ok)
    assert ok.tolist() == [0, 1]  # program 0 gave up; program 1 found both arrivals
    assert stall_record.tolist() == [1, 0, 7, 1, 2]  # flag, program, step, arrivals seen, target
    with pytest.raises(RuntimeError, match=r"gave up waiting at its grid barrier \(program 0, step 7: 1 of 2"):
        barrier.raise_if_stalled(torch.device("cpu"))
    assert stall_record.tolist() == [0] * 5
    barrier.raise_if_stalled(torch.device("cpu"))  # cleared: reported once


def test_a_stalled_persistent_layer_ends_and_the_next_launch_raises(stall_record, monkeypatch):
    """The persistent kernel with 2 programs in the interpreter: program 0 stalls at step 0's barrier and stops its
    loop (it does not hang), program 1 stalls at step 1; the next persistent launch reports the first stall."""
    from rnnfused._triton.dispatch import PathChoice

    monkeypatch.setenv("RNNFUSED_TRITON_PATH", "persistent")
    monkeypatch.setattr(launch_common, "SPIN_LIMIT", 20)
    monkeypatch.setattr(PathChoice, "num_programs", lambda self, tiles, device, interpreted: 2)
    case = Case("rnn_tanh", B=2, T=3, I=3, H=20)
    x = make_inputs(case, requires_grad=False)
    run_backend(case.kind, x, "triton")  # results are garbage; the launch ended
    assert stall_record.tolist()[:3] == [1, 0, 0]
    with pytest.raises(RuntimeError, match="rnnfused triton: a persistent kernel on cpu gave up"):
        run_backend(case.kind, x, "triton")


# ------------------------------------------------------------------------------------------------- 4. lengths
def test_lengths_on_the_inputs_device_are_not_value_checked():
    """meta stands in for a GPU: lengths there are accepted without reading them (any values, no sync)."""
    meta = torch.device("meta")
    _check_lengths("op", torch.empty(3, dtype=torch.int64, device="meta"), 3, 5, meta)
    _check_lengths("op", torch.tensor([5, 1, 2]), 3, 5, meta)  # CPU lengths with a device input: checked, fine
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, seq_len=5\]"):
        _check_lengths("op", torch.tensor([6, 1, 2]), 3, 5, meta)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, seq_len=5\]"):
        _check_lengths("op", torch.tensor([0, 1, 2]), 3, 5, torch.device("cpu"))  # CPU input: its device, checked


@pytest.mark.parametrize("bad,what", [(torch.empty(3, dtype=torch.int32, device="meta"), "int32"),
                                      (torch.empty(2, dtype=torch.int64, device="meta"), "shape"),
                                      (torch.empty(3, dtype=torch.int64, device="meta"), "other device")],
                         ids=["int32", "shape", "other-device"])
def test_device_lengths_still_need_int64_shape_b_and_the_inputs_device(bad, what):
    device = torch.device("cpu") if what == "other device" else torch.device("meta")
    with pytest.raises(RuntimeError, match="lengths must be an int64 tensor of shape \\[3\\] on the CPU or on"):
        _check_lengths("op", bad, 3, 5, device)


def test_out_of_range_lengths_only_mask_rows(monkeypatch):
    """What an unchecked device length can do: the kernels only compare t < lengths[b]. Run the kernels with
    out-of-range values (bypassing the op's check, as device lengths do): rows with length ≥ T run every step, rows
    with length ≤ 0 none — no error, no out-of-bounds access (the interpreter checks every access)."""
    from rnnfused._triton.dispatch import PathChoice
    from rnnfused._triton.forward_launch import forward_recurrence

    kind = CELL_KINDS["gru"]
    case = Case("gru", B=3, T=3, I=3, H=5)
    x = make_inputs(case, requires_grad=False)
    xg = torch.addmm(x.b_ih, x.input.view(-1, case.I), x.w_ih.t()).view(case.T, case.B, -1)
    choice = PathChoice("persistent", "one program: the same tile code as the per-step kernels")
    wild = forward_recurrence(kind, choice, xg, x.h0, None, x.w_hh, x.b_hh, None,
                              torch.tensor([10**12, -5, 2**40]), False)
    full = forward_recurrence(kind, choice, xg, x.h0, None, x.w_hh, x.b_hh, None, None, False)
    torch.testing.assert_close(wild.output[:, 0], full.output[:, 0])
    assert torch.equal(wild.output[:, 1], torch.zeros_like(wild.output[:, 1]))
    torch.testing.assert_close(wild.h_n[1], x.h0[1])
    torch.testing.assert_close(wild.output[:, 2], full.output[:, 2])
