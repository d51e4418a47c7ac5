"""DMD (DMDObjective; `--mode dmd`): the loss's gradient is the weighted score difference of Eq. 7-8; on a 2-D
Gaussian it spreads the collapsed one-step map of a teacher-initialised student toward the data; the fake denoiser
resumes exactly."""

from __future__ import annotations

import pytest
import torch

import fewstep as fs
from fewstep.data import ImageData
from fewstep.distill.config import ConsistencyConfig, make_config
from fewstep.distill.consistency import make_student
from fewstep.distill.dmd import DMDConfig, DMDObjective, FakeScore, dm_loss, dm_sigmas
from fewstep.distill.run import distill
from fewstep.train.loop import TrainConfig, train

MU, STD = torch.tensor([0.5, -0.3]), 0.4
EDM_MLP = {"kind": "denoiser", "net": {"class": "mlp", "kwargs": {"dim": 2, "hidden": 64, "depth": 2}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [2]}


def _data(n: int = 2048) -> ImageData:
    return ImageData("gauss", MU + STD * torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def teacher() -> torch.nn.Module:
    """A small EDM denoiser of the Gaussian, trained for a few hundred steps (DMD copies its network)."""
    torch.manual_seed(0)
    tc = TrainConfig(steps=600, batch=256, lr=3e-3, warmup=20, ema_decay=0.95, progress=False, label_dropout=0.0)
    return train(EDM_MLP, _data(), tc).den.requires_grad_(False)


def _one_step(den: torch.nn.Module, n: int = 4000) -> torch.Tensor:
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return den(80.0 * z, torch.full((n,), 80.0, dtype=torch.float64), None)


def test_dm_loss_gradient_is_the_weighted_difference_of_the_two_denoisers():
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    real = lambda x_t, s, c: 0.5 * x_t  # noqa: E731
    fake = lambda x_t, s, c: 0.5 * x_t + 0.1  # noqa: E731
    dm_loss(x, real, fake, None, torch.Generator().manual_seed(1), 0.002, 80.0).sum().backward()
    g = torch.Generator().manual_seed(1)  # replay the draws: sigma, then the noise of x_t
    sigma = dm_sigmas(6, g, 0.002, 80.0, 7.0, x.device)
    x_t = x.detach() + sigma.float().view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
    norm = (x.detach() - 0.5 * x_t).abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    torch.testing.assert_close(x.grad, (0.1 / norm / 16).expand_as(x))
    assert ((0.002 <= sigma) & (sigma <= 80.0)).all()
    y = x.detach().clone().requires_grad_(True)
    dm_loss(y, real, real, None, torch.Generator().manual_seed(1), 0.002, 80.0).sum().backward()
    assert torch.count_nonzero(y.grad) == 0  # a fake that equals the teacher: nothing to match


def test_dmd_spreads_the_collapsed_one_step_map_toward_the_data(teacher):
    torch.manual_seed(0)
    tc = TrainConfig(steps=300, batch=256, lr=3e-4, warmup=20, ema_decay=0.9, progress=False, label_dropout=0.0)
    res = distill(DMDConfig(fake_lr=1e-3), tc, _data(), teacher=teacher)
    before = _one_step(make_student(teacher))  # D(80 z, 80): about the data mean
    after = _one_step(res.den)
    err = lambda x: ((x.mean(0) - MU).norm() + (x.std(0) - STD).abs().sum()).item()  # noqa: E731
    assert before.std(0).max() < 0.1 and err(after) < 0.15 * err(before), (err(before), err(after))
    assert torch.equal(res.den(torch.ones(3, 2), 0.002), torch.ones(3, 2))  # still a consistency model


def test_resume_restores_the_fake_denoiser_exactly(teacher, tmp_path):
    cc = DMDConfig(reg=0.5, reg_paths=64, N=6)
    kw = dict(batch=32, lr=1e-3, warmup=2, progress=False, label_dropout=0.0, ckpt_every=2)
    full = distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher)
    out = tmp_path / "dmd.safetensors"
    distill(cc, TrainConfig(steps=2, **kw), _data(), teacher=teacher, out=out)
    resumed = distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher, out=out, resume=True)
    for a, b in zip(full.raw.state_dict().values(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    fake = torch.load(out.with_suffix(".ckpt.pt"), weights_only=True)["objective"]["fake"]
    assert any(not torch.equal(v, teacher.state_dict()[k]) for k, v in fake["net"].items())  # it was trained


def test_dmd_needs_a_teacher_network():
    with pytest.raises(ValueError, match="teacher"):
        DMDObjective(DMDConfig(), teacher=None)
    analytic = fs.analytic.GaussianMixture(MU[None], torch.tensor([STD]))
    with pytest.raises(ValueError, match="fewstep teacher network"):
        FakeScore(analytic, 1e-4)
    with pytest.raises(ValueError, match="skip"):
        make_config("dmd", skip=2)
    with pytest.raises(ValueError, match="mu"):
        make_config("dmd", mu=0.9)
    with pytest.raises(ValueError, match="fake_lr"):
        DMDConfig(fake_lr=0.0)
    with pytest.raises(ValueError, match="DMDConfig"):  # DMD is not a consistency mode any more
        ConsistencyConfig(mode="dmd")


def test_a_checkpoint_from_when_dmd_was_a_consistency_mode_resumes_exactly(teacher, tmp_path):
    cc = DMDConfig(reg=0.5, reg_paths=64, N=6)
    kw = dict(batch=32, lr=1e-3, warmup=2, progress=False, label_dropout=0.0, ckpt_every=2)
    full = distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher)
    out = tmp_path / "dmd.safetensors"
    distill(cc, TrainConfig(steps=2, **kw), _data(), teacher=teacher, out=out)
    ckpt = out.with_suffix(".ckpt.pt")
    state = torch.load(ckpt, weights_only=True)  # as ConsistencyConfig(mode="dmd") wrote it: all 4 modes' fields
    state["config"]["model"]["distill"].update(mu=0.0, s0=2, s1=150, mu0=0.9, weight="uniform", skip=1, P_mean=-1.1,
                                               P_std=2.0, horizon=None)
    state["objective"]["target"] = None
    torch.save(state, ckpt)
    resumed = distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher, out=out, resume=True)
    for a, b in zip(full.raw.state_dict().values(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(fs.errors.CheckpointError, match="fake_lr"):  # a DMD setting that differs still differs
        distill(DMDConfig(reg=0.5, reg_paths=64, N=6, fake_lr=1e-3), TrainConfig(steps=6, **kw), _data(),
                teacher=teacher, out=out, resume=True)
