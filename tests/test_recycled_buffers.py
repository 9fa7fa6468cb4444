"""Recycled CPU blocks of the cell steps (csrc/cpu/recycled_buffers.h): a Fused*Cell loop's per-step weight gradients
and gate buffers go back to a free list when autograd frees them and the next step takes them, instead of fresh
memory that glibc may trim and fault in again at every step. The blocks must never be handed out while in use, the
results must not depend on recycling, and the lists stay bounded."""
import io
import threading

import pytest
import torch

from rnnfused import FusedGRUCell, FusedLSTMCell, FusedRNNCell
from rnnfused._extension import extension

C = extension()
CELLS = {"lstm": FusedLSTMCell, "gru": FusedGRUCell, "rnn": FusedRNNCell}


def cell_loop_grads(cell, x):
    """Gradients of a 64-step-style decoder loop (x [T, B, I]) w.r.t. x and every parameter."""
    x = x.detach().requires_grad_()
    state, hs = None, []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        hs.append(state[0] if isinstance(state, tuple) else state)
    return torch.autograd.grad(torch.stack(hs).square().sum(), [x, *cell.parameters()])


def make(kind, hidden, dtype, seed=0):
    torch.manual_seed(seed)
    cell = CELLS[kind](hidden, hidden).to(dtype)
    return cell, torch.randn(8, 2, hidden, dtype=dtype)


@pytest.fixture(autouse=True)
def recycling_on():
    previous = C._cpu_set_recycling(True)
    yield
    C._cpu_set_recycling(previous)


def test_a_cell_loop_reuses_its_weight_gradient_blocks():
    cell, x = make("lstm", 256, torch.float32)  # weight gradients [1024, 256] float32: 1 MiB each
    cell_loop_grads(cell, x)
    before = C._cpu_recycled_stats()
    cell_loop_grads(cell, x)
    after = C._cpu_recycled_stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    steps = x.shape[0]
    assert hits >= 2 * steps - 2, (hits, misses)  # two weight gradients per step, all but autograd's running sums
    assert misses <= 2, (hits, misses)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_results_do_not_depend_on_recycling(kind, dtype):
    cell, x = make(kind, 192, dtype)  # LSTM float32 [768, 192]: 576 KiB blocks; RNN float32 [192, 192]: 144 KiB
    recycled = [cell_loop_grads(cell, x) for _ in range(2)]
    C._cpu_set_recycling(False)
    plain = cell_loop_grads(cell, x)
    for run in recycled:
        for a, b in zip(run, plain):
            assert torch.equal(a, b)


def test_blocks_in_use_are_never_handed_out():
    cell, x = make("gru", 256, torch.float32)
    kept = [cell_loop_grads(cell, x * (i + 1)) for i in range(3)]  # live results hold recycled blocks
    copies = [[g.clone() for g in grads] for grads in kept]
    for i in range(3):
        cell_loop_grads(cell, x * (i + 7))  # more steps: ask for blocks of the same sizes
    for grads, want in zip(kept, copies):
        for g, w in zip(grads, want):
            assert torch.equal(g, w)


def test_free_lists_are_bounded_and_released():
    C._cpu_release_recycled()
    cell, x = make("lstm", 512, torch.float32)  # [2048, 512] float32 weight gradients: 4 MiB each
    held = [cell_loop_grads(cell, x[:2] * i) for i in range(12)]  # 24 weight gradients of 4 MiB alive
    del held  # all freed at once: the lists keep at most 8 blocks of a size and 64 MiB in all
    cached = C._cpu_recycled_stats()["cached_bytes"]
    assert 0 < cached <= 8 * (4 << 20) + (64 << 20)
    assert C._cpu_release_recycled() == cached
    assert C._cpu_recycled_stats()["cached_bytes"] == 0


def test_gradients_in_recycled_blocks_are_ordinary_tensors():
    cell, x = make("lstm", 256, torch.float32)
    cell(x[0])[0].sum().backward()
    grad = cell.weight_hh.grad
    assert grad.is_contiguous() and grad.device.type == "cpu"
    buffer = io.BytesIO()
    torch.save(grad, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer), grad)
    expected = grad.clone()
    n = expected.numel()
    grad.resize_(2 * n)  # grows through the same allocator
    assert torch.equal(grad[:n].view_as(expected), expected)
    grad[n:].zero_()  # the grown half is uninitialised memory: it may hold NaN bit patterns, which equal() rejects
    array = grad.numpy()  # (numpy sharing makes a storage non-resizable)
    assert array.ctypes.data == grad.data_ptr() and torch.equal(torch.from_numpy(array), grad)
    cell.zero_grad()  # set_to_none: the block goes back to its list


def test_threads_share_the_lists_safely():
    cell, x = make("lstm", 256, torch.float32)
    want = cell_loop_grads(cell, x)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = [cell_loop_grads(cell, x) for _ in range(3)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for runs in results:
        for run in runs:
            for a, b in zip(run, want):
                assert torch.equal(a, b)
