"""Sequence lengths go to the input's device once per module call, without a blocking copy, and a CUDA-graph
capture finds the copy its warm-up run made (rnnfused/_device_lengths.py). The copy itself needs a GPU
(tests/test_backend_parity.py captures a packed FusedLSTM there); here it is replaced by a recording stand-in."""
import pytest
import torch

from rnnfused import _device_lengths as dl

CUDA = torch.device("cuda", 0)


@pytest.fixture
def fake_gpu(monkeypatch):
    copies, capturing = [], [False]
    monkeypatch.setattr(dl, "_copy", lambda lengths, device: copies.append(lengths.tolist()) or lengths.clone())
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing[0])
    monkeypatch.setattr(dl, "_RECENT", type(dl._RECENT)())
    monkeypatch.setattr(dl, "_CAPTURED", {})
    return copies, capturing


def test_cpu_input_keeps_cpu_lengths_and_none_stays_none(fake_gpu):
    lengths = torch.tensor([3, 1])
    assert dl.lengths_on_device(lengths, torch.device("cpu")) is lengths
    assert dl.lengths_on_device(None, CUDA) is None
    assert fake_gpu[0] == []


def test_one_copy_per_distinct_lengths(fake_gpu):
    copies, _ = fake_gpu
    a = dl.lengths_on_device(torch.tensor([3, 1]), CUDA)
    b = dl.lengths_on_device(torch.tensor([3, 1]), CUDA)
    c = dl.lengths_on_device(torch.tensor([2, 2]), CUDA)
    assert a is b and c is not a and copies == [[3, 1], [2, 2]]


def test_capture_reuses_the_warm_up_copy_and_refuses_unseen_lengths(fake_gpu):
    copies, capturing = fake_gpu
    warm = dl.lengths_on_device(torch.tensor([4, 2, 1]), CUDA)
    capturing[0] = True
    assert dl.lengths_on_device(torch.tensor([4, 2, 1]), CUDA) is warm
    with pytest.raises(RuntimeError, match="before the CUDA-graph capture"):
        dl.lengths_on_device(torch.tensor([5, 5, 5]), CUDA)
    capturing[0] = False
    for i in range(dl._MAX_RECENT + 5):  # push the captured entry out of the recent ones
        dl.lengths_on_device(torch.tensor([i + 10]), CUDA)
    assert dl.lengths_on_device(torch.tensor([4, 2, 1]), CUDA) is warm  # a captured graph still reads it
    assert copies.count([4, 2, 1]) == 1
