"""Guided latent consistency distillation under torch.distributed (gloo, 2 CPU processes, as torchrun starts them):
both ranks end with identical weights and the rank-0 artefact is written."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

pytest.importorskip("diffusers")


def _worker(rank: int, done: str, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        from fewstep.data.sets import ImageData
        from fewstep.distill import lcm
        from fewstep.distill.config import LCMConfig
        from fewstep.io import build_denoiser
        from fewstep.nets.diffusers_unet import unet2d_config
        from fewstep.train.loop import TrainConfig, train

        torch.manual_seed(0)  # the same random latent teacher on both ranks
        config = {"kind": "denoiser", "net": {"class": "diffusers_unet2d", "kwargs": {
            "config": unet2d_config(4, 8, (16, 32), 1, 8), "num_classes": 3}},
            "precond": {"name": "edm", "kwargs": {"sigma_data": 1.0}}, "sigma_min": 0.002, "sigma_max": 80.0,
            "shape": [4, 8, 8], "num_classes": 3}
        teacher = build_denoiser(config).requires_grad_(False)
        teacher.config = config
        z = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        data = ImageData("latents", z, torch.arange(64) % 3, 3)
        cfg = LCMConfig(N=12, skip=2, w_min=1.0, w_max=3.0)
        mc = lcm.student_config(teacher, cfg, "ae")
        res = train(mc, data, TrainConfig(steps=3, batch=16, warmup=1, label_dropout=0.0, progress=False), out=out,
                    objective=lcm.LCMObjective(cfg, teacher), init_state=lcm.student_init(teacher, mc))
        flat = torch.cat([p.detach().flatten() for p in res.raw.parameters()])
        both = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(both, flat)
        assert torch.equal(both[0], both[1])
        init = build_denoiser(mc)
        init.load_state_dict(lcm.student_init(teacher, mc))
        assert (flat != torch.cat([p.detach().flatten() for p in init.parameters()])).any()  # it trained
        dist.barrier()
        open(f"{done}/done{rank}", "w").close()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_lcm_distillation_under_ddp_keeps_ranks_in_sync(tmp_path, spawn_ranks):
    out = tmp_path / "lcm.safetensors"
    spawn_ranks(_worker, str(tmp_path / "init"), str(out))
    assert out.is_file()
