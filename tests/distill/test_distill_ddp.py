"""Distillation under torch.distributed (gloo, 2 CPU processes, as torchrun would start them): both ranks end
with identical weights and the rank-0 artefact is written."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        import fewstep as fs
        from fewstep.data import ImageData
        from fewstep.distill.consistency import ConsistencyConfig
        from fewstep.distill.run import distill
        from fewstep.train.loop import TrainConfig

        x = 0.3 + 0.5 * torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
        teacher = fs.analytic.GaussianMixture(torch.tensor([[0.3, 0.3]]), torch.tensor([0.5]))
        net = {"class": "mlp", "kwargs": {"dim": 2, "hidden": 32, "depth": 1}}
        res = distill(ConsistencyConfig(mode="cd", N=10, mu=0.5), TrainConfig(steps=4, batch=32, progress=False),
                      ImageData("g", x), teacher=teacher, net=net, out=out)
        flat = torch.cat([p.detach().flatten() for p in res.raw.parameters()])
        both = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(both, flat)
        assert torch.equal(both[0], both[1])
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_cd_under_ddp_keeps_ranks_in_sync(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "cm.safetensors"
    mp.spawn(_worker, args=(port, str(out)), nprocs=2, join=True)
    assert out.is_file()
