"""An objective with an online auxiliary network (fewstep.train.aux.AuxNet): a run killed mid-way and resumed from
its checkpoint equals the uninterrupted run bitwise (model, EMA, aux net, both optimisers, logged losses); under 2
gloo ranks the loop DDP-wraps the aux net, so its copies stay equal."""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch import nn

from fewstep.train import AuxNet, Objective, TrainConfig, edm_loss, load_checkpoint, train

MC = {"net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 16, "depth": 1}}, "precond": {"name": "edm"},
      "sigma_min": 0.002, "sigma_max": 80.0, "shape": [2]}


def _data() -> SimpleNamespace:
    x = 0.3 + 0.5 * torch.randn(128, 2, generator=torch.Generator().manual_seed(0))
    return SimpleNamespace(x=x, y=None, num_classes=0, shape=(2,))


class _Critic(Objective):
    """EDM loss plus a pull of D(x0 + n, 1) toward an online critic's guess of it; the critic (an AuxNet) is
    trained on the model's detached outputs with its own Adam. `kill_at`: raise after that many steps."""

    def __init__(self, kill_at: int | None = None) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(5)
            net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 2))
        self.critic = AuxNet("critic", net, functools.partial(torch.optim.Adam, lr=1e-2))
        self.aux, self.kill_at, self.critic_losses = [self.critic], kill_at, []

    def loss(self, model, x0, cond, generator, step):
        x = x0 + torch.randn(x0.shape, generator=generator)
        out = model(x, torch.ones(x0.shape[0], dtype=torch.float64), cond)
        with torch.no_grad():
            guess = self.critic(x)
        self.critic_losses.append(self.critic.step((self.critic.module(x) - out.detach()).square().mean()))
        return edm_loss(model, x0, cond, generator) + 0.5 * (out - guess).square().mean(1)

    def after_step(self, model, step):
        if step + 1 == self.kill_at:
            raise KeyboardInterrupt("killed")

    def state_dict(self):
        return {"critic_losses": list(self.critic_losses)}

    def load_state_dict(self, state):
        self.critic_losses = list(state["critic_losses"])


def _equal_states(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal_states(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal_states(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_a_killed_run_with_an_aux_net_resumes_bitwise(tmp_path):
    cfg = TrainConfig(steps=8, batch=16, lr=5e-3, warmup=2, ckpt_every=3, log_every=1, progress=False)
    full_obj = _Critic()
    full = train(MC, _data(), cfg, ckpt=tmp_path / "full.pt", objective=full_obj)
    with pytest.raises(KeyboardInterrupt):  # killed during step 5: the checkpoint of step 3 is what is left
        train(MC, _data(), cfg, ckpt=tmp_path / "cut.pt", objective=_Critic(kill_at=5))
    assert int(load_checkpoint(tmp_path / "cut.pt")["step"]) == 3
    obj = _Critic()
    resumed = train(MC, _data(), cfg, ckpt=tmp_path / "cut.pt", resume=True, objective=obj)
    assert resumed.losses == full.losses and obj.critic_losses == full_obj.critic_losses
    for a, b in ((full.raw, resumed.raw), (full.den, resumed.den), (full_obj.critic.net, obj.critic.net)):
        assert _equal_states(a.state_dict(), b.state_dict())
    assert _equal_states(full_obj.critic.opt.state_dict(), obj.critic.opt.state_dict())
    ca, cb = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "cut.pt")
    for key in ("model", "ema", "optimizer", "scheduler", "objective", "losses"):
        assert _equal_states(ca[key], cb[key]), key
    assert set(ca["objective"]["critic"]) == {"net", "optimizer"}  # the aux net is checkpointed under its name
    plain = train(MC, _data(), cfg)  # the critic does act on the model: a plain EDM run ends elsewhere
    assert not _equal_states(plain.raw.state_dict(), full.raw.state_dict())


def test_the_loop_takes_only_declared_objectives():
    cfg = TrainConfig(steps=1, batch=16, progress=False)
    with pytest.raises(TypeError, match="Objective"):
        train(MC, _data(), cfg, objective=lambda model, x0, cond, gen, step: edm_loss(model, x0, cond, gen))


def _worker(rank: int, done: str, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        obj = _Critic()
        res = train(MC, _data(), TrainConfig(steps=4, batch=32, lr=5e-3, progress=False), objective=obj)
        for m in (res.raw, obj.critic.net):
            flat = torch.cat([p.detach().flatten() for p in m.parameters()])
            both = [torch.zeros_like(flat) for _ in range(2)]
            dist.all_gather(both, flat)
            assert torch.equal(both[0], both[1])
        assert isinstance(obj.critic.module, nn.parallel.DistributedDataParallel)
        dist.barrier()  # neither rank tears gloo down while the other is still using it
        open(f"{done}/done{rank}", "w").close()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed (gloo)")
def test_aux_net_stays_in_sync_across_two_gloo_ranks(tmp_path, spawn_ranks):
    spawn_ranks(_worker, str(tmp_path / "init"))
