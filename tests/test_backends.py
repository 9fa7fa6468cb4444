"""The backend selection rule: backend= argument > RNNFUSED_BACKEND > auto; unavailable names are errors."""
import pytest
import torch

import rnnfused
from rnnfused import backends
from rnnfused import functional as F


def test_auto_picks_the_cpu_kernels_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.resolve_backend(None, "cpu", torch.float32) == "cpu"
    assert backends.resolve_backend("auto", "cpu", torch.float64) == "cpu"


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "cpu")
    assert backends.resolve_backend("reference", "cpu", torch.float32) == "reference"
    assert backends.resolve_backend(None, "cpu", torch.float32) == "cpu"
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert backends.resolve_backend(None, "cpu", torch.float32) == "reference"


def test_unknown_backend_is_an_error_naming_it(monkeypatch):
    with pytest.raises(RuntimeError, match="backend='nope'.*unknown backend"):
        backends.resolve_backend("nope", "cpu", torch.float32)
    monkeypatch.setenv(backends.ENV_VAR, "nope")
    with pytest.raises(RuntimeError, match="RNNFUSED_BACKEND='nope'"):
        backends.resolve_backend(None, "cpu", torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_backend_for_cpu_tensors_is_an_error_not_a_fallback():
    with pytest.raises(RuntimeError, match="cuda backend runs CUDA tensors"):
        backends.resolve_backend("cuda", "cpu", torch.float32)
    x = torch.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="cuda"):
        F.gru(x, None, torch.randn(15, 4), torch.randn(15, 5), backend="cuda")


def test_cpu_backend_for_cuda_device_is_an_error():
    with pytest.raises(RuntimeError, match="cpu backend runs CPU tensors"):
        backends.resolve_backend("cpu", "cuda", torch.float32)


def test_available_backends_lists_what_runs_here():
    names = rnnfused.available_backends("cpu")
    assert names[:2] == ["reference", "cpu"]
    for name in names:
        assert backends.unavailable_reason(name, "cpu") is None


def test_functional_runs_on_the_backend_the_rule_picks(monkeypatch):
    calls = []
    real = backends.get_backend

    def spy(backend, device, dtype):
        impl = real(backend, device, dtype)
        calls.append(impl.name)
        return impl

    monkeypatch.setattr(backends, "get_backend", spy)
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    x = torch.randn(3, 2, 4)
    F.rnn(x, None, torch.randn(5, 4), torch.randn(5, 5))
    F.rnn(x, None, torch.randn(5, 4), torch.randn(5, 5), backend="cpu")
    assert calls == ["reference", "cpu"]


def test_cuda_path_query_answers_or_says_why_not():
    if rnnfused.cuda_built():
        # Without a GPU the query plans on the meta device: no persistent kernels there.
        path, why = rnnfused.cuda_path("gru", 16, 4, 8, 32, dtype=torch.float16, lengths=True, explain=True)
        assert path == ("persistent" if torch.cuda.is_available() else "stepwise") and why, why
        with pytest.raises(RuntimeError, match="cell must be one of"):
            rnnfused.cuda_path("lstmx", 16, 4, 8, 32)
        with pytest.raises(RuntimeError, match="proj_size"):
            rnnfused.cuda_path("gru", 16, 4, 8, 32, proj_size=8)
    else:
        with pytest.raises(RuntimeError, match="without CUDA"):
            rnnfused.cuda_path("lstm", 16, 4, 8, 32)
