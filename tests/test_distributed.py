"""DistributedDataParallel (gloo, 2 CPU processes) and FSDP2 wrapping of a FusedLSTM model: the gradients equal
the single-process ones. The NCCL variant runs on a machine with 2+ GPUs."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rnnfused import FusedLSTM

WORLD = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Model(nn.Module):
    def __init__(self, backend="cpu"):
        super().__init__()
        self.rnn = FusedLSTM(6, 12, num_layers=2, batch_first=True, bidirectional=True, backend=backend)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 7, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)


def _single_process_grads():
    torch.manual_seed(0)
    model = Model().double()
    x, y = _data()
    nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def _worker(rank, port, wrapper, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    nccl = wrapper == "ddp-nccl"
    dist.init_process_group("nccl" if nccl else "gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        device = torch.device("cuda", rank) if nccl else torch.device("cpu")
        model = Model(backend="cuda" if nccl else "cpu").double().to(device)
        names = [n for n, _ in model.named_parameters()]
        if wrapper.startswith("ddp"):
            model = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if nccl else None)
        else:
            from torch.distributed.fsdp import fully_shard

            fully_shard(model.rnn)
            fully_shard(model)
        x, y = (t.to(device) for t in _data())
        shard = slice(rank * 4, rank * 4 + 4)  # each rank takes half of the batch
        nn.functional.cross_entropy(model(x[shard]), y[shard]).backward()
        grads = {}
        for name, p in zip(names, model.parameters()):
            g = p.grad
            if hasattr(g, "full_tensor"):  # FSDP2: DTensor shards -> the full gradient
                g = g.full_tensor()
            grads[name] = g.detach().cpu().clone()
        if rank == 0:
            torch.save(grads, os.path.join(out_dir, f"{wrapper}.pt"))
        # No rank tears its connections down while the other may still be finishing a collective: without this, a
        # loaded 2-core machine now and then saw a gloo rank abort ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp2", "ddp-nccl"])
def test_distributed_gradients_equal_single_process(wrapper, tmp_path):
    if wrapper == "ddp-nccl":
        if torch.cuda.device_count() < WORLD or not dist.is_nccl_available():
            pytest.skip(f"NCCL needs {WORLD} CUDA GPUs")
        from rnnfused.backends import unavailable_reason

        if unavailable_reason("cuda", "cuda") is not None:
            pytest.skip(unavailable_reason("cuda", "cuda"))
    elif not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    mp.spawn(_worker, args=(_free_port(), wrapper, str(tmp_path)), nprocs=WORLD, join=True)
    got = torch.load(tmp_path / f"{wrapper}.pt")
    expected = _single_process_grads()
    assert got.keys() == expected.keys()
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, atol=1e-12, rtol=1e-10, msg=name)
