"""torch.distributed DDP on CPU (gloo): two processes train the same model and end with identical weights."""

import os
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist


def _worker(rank: int, done: str, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from fewstep.train import TrainConfig, train

        g = torch.Generator().manual_seed(0)
        ds = SimpleNamespace(x=torch.randn(64, 2, generator=g), y=None, num_classes=0, shape=(2,))
        mc = {"net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1}},
              "precond": {"name": "edm", "kwargs": {}}, "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]}
        cfg = TrainConfig(steps=6, batch=16, lr=1e-2, warmup=1, ckpt_every=3, progress=False)
        res = train(mc, ds, cfg, out=os.path.join(out_dir, "model.safetensors"))
        torch.save({"raw": res.raw.state_dict(), "ema": res.den.state_dict()}, os.path.join(out_dir, f"r{rank}.pt"))
        dist.barrier()  # neither rank tears gloo down while the other is still using it
        open(os.path.join(done, f"done{rank}"), "w").close()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed (gloo)")
def test_two_cpu_ranks_end_with_identical_weights(tmp_path, spawn_ranks):
    spawn_ranks(_worker, 2, str(tmp_path / "init"), str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(2))
    for key in ("raw", "ema"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])
    # the ranks trained (weights moved off the zero-initialised output layer); rank 0 wrote the artefact
    assert r0["raw"]["net.out.2.weight"].abs().sum() > 0
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.ckpt.pt").is_file()
