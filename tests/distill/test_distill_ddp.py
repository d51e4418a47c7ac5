"""Distillation under torch.distributed (gloo, 2 CPU processes, as torchrun would start them): both ranks end
with identical weights (the ODE-pair regression's second student call included; for DMD, the fake denoiser's too)
and the rank-0 artefact is written."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist


def _worker(rank: int, done: str, init_file: str, out: str, mode: str) -> None:
    torch.set_num_threads(1)
    # a file store, not a TCP store hosted by rank 0: rank 0 leaving first cannot pull the store from under rank 1
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        import fewstep as fs
        from fewstep.data import ImageData
        from fewstep.distill.consistency import ConsistencyConfig, student_config
        from fewstep.distill.dmd import DMDConfig, DMDObjective
        from fewstep.distill.run import distill, ode_bank
        from fewstep.train.loop import TrainConfig, train

        x = 0.3 + 0.5 * torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
        net = {"class": "mlp", "kwargs": {"dim": 2, "hidden": 32, "depth": 1}}
        tc = TrainConfig(steps=4, batch=32, progress=False)
        if mode == "cd":
            teacher = fs.analytic.GaussianMixture(torch.tensor([[0.3, 0.3]]), torch.tensor([0.5]))
            cc = ConsistencyConfig(mode="cd", N=10, mu=0.5, reg=1.0, reg_paths=64)
            nets = [distill(cc, tc, ImageData("g", x), teacher=teacher, net=net, out=out).raw]
        else:  # the loop with the objective in hand, to compare the fake denoisers too
            torch.manual_seed(0)  # the same (random) teacher network on both ranks
            teacher = fs.io.build_denoiser({"kind": "denoiser", "net": net, "precond": {"name": "edm"},
                                            "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]})
            cc = DMDConfig(N=10, reg=1.0, reg_paths=64)
            objective = DMDObjective(cc, teacher.requires_grad_(False), ode_bank(teacher, cc, (2,)))
            res = train(student_config(teacher.config), ImageData("g", x), tc, out=out, objective=objective,
                        init_state=teacher.state_dict())
            nets = [res.raw, objective.fake.net]
        for m in nets:
            flat = torch.cat([p.detach().flatten() for p in m.parameters()])
            both = [torch.zeros_like(flat) for _ in range(2)]
            dist.all_gather(both, flat)
            assert torch.equal(both[0], both[1])
        dist.barrier()  # neither rank tears gloo down while the other is still using it
        open(f"{done}/done{rank}", "w").close()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cd", "dmd"])
def test_distillation_under_ddp_keeps_ranks_in_sync(tmp_path, spawn_ranks, mode):
    out = tmp_path / "cm.safetensors"
    spawn_ranks(_worker, str(tmp_path / "init"), str(out), mode)
    assert out.is_file()
