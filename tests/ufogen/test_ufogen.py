"""UFOGen (fewstep.distill.ufogen): gamma_t against the DDPM posterior KL, the clamped BCE, the zero-initialised
discriminator head, a few training steps on a tiny UNet, kill-and-resume bitwise with the discriminator, and the
sampler's shapes and per-seed determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fewstep as fs
from fewstep.data import ImageData
from fewstep.distill.discriminator import EncoderDisc, UNetDisc
from fewstep.distill.ufogen import (
    UFOGenConfig,
    UFOGenObjective,
    adversarial_losses,
    distill_ufogen,
    gamma,
    img2img,
    sample_times,
    sampling_sigmas,
    sigma_of,
)
from fewstep.io import build_denoiser, save_model
from fewstep.train.loop import TrainConfig

TINY = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8, "num_blocks": 1,
                                                                  "channel_mult": [1, 2], "num_classes": 3}},
        "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
        "shape": [1, 4, 4]}


@pytest.fixture(scope="module")
def teacher() -> torch.nn.Module:
    """A tiny random UNet denoiser with a trained-looking (non-zero) output layer."""
    torch.manual_seed(0)
    den = build_denoiser(TINY)
    with torch.no_grad():
        for p in den.net.out[-1].parameters():
            p.normal_(0, 0.1)
    return den.requires_grad_(False)


def _data(n: int = 64) -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData("tiny", torch.rand(n, 1, 4, 4, generator=g) * 2 - 1, torch.randint(3, (n,), generator=g), 3)


def _kl_posterior(abar_t: float, abar_s: float, x0: torch.Tensor, x0p: torch.Tensor, x_t: torch.Tensor) -> float:
    """KL(q(x_s | x_t, x0) || q(x_s | x_t, x0')) in VP coordinates from Ho et al. (2020), Eq. 6-7 with the gap's
    beta_{t|s} = 1 - abar_t / abar_s and alpha_{t|s} = abar_t / abar_s."""
    beta = 1 - abar_t / abar_s
    mean = lambda a: (abar_s ** 0.5 * beta / (1 - abar_t)) * a + ((1 - beta) ** 0.5 * (1 - abar_s) / (1 - abar_t)) * x_t  # noqa: E731
    var = (1 - abar_s) / (1 - abar_t) * beta
    p = torch.distributions.Normal(mean(x0), var ** 0.5)
    q = torch.distributions.Normal(mean(x0p), var ** 0.5)
    return float(torch.distributions.kl_divergence(p, q).sum())


@pytest.mark.parametrize("sig_t,sig_s", [(80.0, 17.5), (2.5, 0.17), (0.5, 0.002), (17.5, 2.5)])
def test_gamma_is_the_posterior_kl_per_unit_x0_error(sig_t, sig_s):
    g = torch.Generator().manual_seed(1)
    x0, x0p, eps = (torch.randn(64, generator=g, dtype=torch.float64) for _ in range(3))
    abar = lambda s: 1 / (1 + s ** 2)  # noqa: E731  VE sigma <-> VP abar
    x_t = abar(sig_t) ** 0.5 * x0 + (1 - abar(sig_t)) ** 0.5 * eps  # the VP point; the KL does not depend on it
    kl = _kl_posterior(abar(sig_t), abar(sig_s), x0, x0p, x_t)
    # x0 in VP coordinates is x0 in VE coordinates (x_vp = sqrt(abar) x_ve), so the same gamma weights ||x0 - x0'||^2
    want = float(gamma(torch.tensor(sig_t), torch.tensor(sig_s))) * float((x0 - x0p).square().sum())
    assert kl == pytest.approx(want, rel=1e-6)
    notes = (1 - (1 - abar(sig_t) / abar(sig_s))) * abar(sig_s) / (2 * (1 - abar(sig_t) / abar(sig_s)))
    assert float(gamma(torch.tensor(sig_t), torch.tensor(sig_s))) != pytest.approx(notes, rel=1e-2)


def test_time_map_ends_and_sampler_sigmas():
    c = UFOGenConfig()
    assert float(sigma_of(c.T, c)) == pytest.approx(80.0) and float(sigma_of(0, c)) == pytest.approx(0.002)
    s = sampling_sigmas(4, c)
    assert s[0] == pytest.approx(80.0) and all(a > b for a, b in zip(s, s[1:], strict=False)) and len(s) == 4
    t, sm = sample_times(1000, c, torch.Generator().manual_seed(0))
    assert set(t.tolist()) == {1000, 750, 500, 250} and torch.equal(sm, (t - 250).clamp_min(0))
    t, sm = sample_times(1000, UFOGenConfig(times="uniform", gap=900), torch.Generator().manual_seed(0))
    assert t.min() >= 1 and t.max() <= 1000 and sm.min() == 0 and torch.equal(sm, (t - 900).clamp_min(0))


def test_clamped_bce_matches_the_code_and_stops_past_the_clamp():
    real = torch.tensor([[-1.0, 0.2, 2.0]], requires_grad=True)
    fake = torch.tensor([[-2.0, 0.1, 1.0]], requires_grad=True)
    d, g = adversarial_losses(real, fake, 0.5)
    bce = F.binary_cross_entropy_with_logits
    want_d = (bce(fake.clamp(min=-0.5), torch.zeros(1, 3), reduction="none")
              + bce(real.clamp(max=0.5), torch.ones(1, 3), reduction="none")).mean(1)
    torch.testing.assert_close(d, want_d)
    torch.testing.assert_close(g, bce(fake.clamp(max=0.5), torch.ones(1, 3), reduction="none").mean(1))
    d.sum().backward()
    assert real.grad[0, 2] == 0 and fake.grad[0, 0] == 0 and real.grad[0, 0] < 0 and fake.grad[0, 2] > 0


@pytest.mark.parametrize("cls", [UNetDisc, EncoderDisc])
def test_zero_initialised_head_makes_the_first_output_constant(teacher, cls):
    D = cls(teacher)
    g = torch.Generator().manual_seed(0)
    x, sig = torch.randn(8, 1, 4, 4, generator=g) * 3, torch.rand(8, generator=g, dtype=torch.float64) * 10 + 0.01
    out = D(x, sig, torch.randint(4, (8,), generator=g))
    assert torch.count_nonzero(out) == 0
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    adversarial_losses(D(x + 1, sig), D(x, sig), 0.5)[0].mean().backward()
    opt.step()
    assert out.shape[0] == 8 and D(x, sig).std() > 0  # one step away from zero it tells inputs apart
    assert all(torch.equal(a, b) for a, b in zip(D.state_dict().values(), cls(teacher).state_dict().values(),
                                                 strict=True)) is False


def _tc(steps: int, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch=16, lr=1e-3, warmup=1, ema_decay=0.9, label_dropout=0.5, ckpt_every=2,
                       log_every=1, progress=False, **kw)


@pytest.mark.parametrize("cfg", [UFOGenConfig(), UFOGenConfig(recon="x0", gamma_max=10.0, times="uniform", r1=0.1,
                                                                 disc="encoder", d_every=1, gap=1000)])
def test_a_few_steps_train_generator_and_discriminator(teacher, cfg):
    res = distill_ufogen(cfg, _tc(3), _data(), teacher)
    assert all(torch.isfinite(torch.tensor(res.losses)))
    moved = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a.values(), b.values(), strict=True))  # noqa: E731
    assert moved(res.raw.state_dict(), teacher.state_dict())
    assert res.raw.config["kind"] == "ufogen" and res.raw.config["sampler"]["sigmas"]["1"] == [80.0]


def test_the_discriminator_trains_and_the_objective_needs_a_unet_teacher(teacher):
    obj = UFOGenObjective(UFOGenConfig(d_every=1), teacher)
    before = {k: v.clone() for k, v in obj.disc.net.state_dict().items()}
    G = build_denoiser(TINY, teacher.state_dict()).train()
    x = _data().x[:16]
    obj.loss(G, x, None, torch.Generator().manual_seed(0), 0).mean().backward()
    after = obj.disc.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="UNet"):
        UFOGenObjective(UFOGenConfig(), fs.analytic.GaussianMixture(torch.zeros(1, 2), torch.ones(1)))


def test_kill_and_resume_is_bitwise_with_the_discriminator(teacher, tmp_path):
    cfg = UFOGenConfig(r1=0.05)
    full = distill_ufogen(cfg, _tc(4), _data(), teacher, out=tmp_path / "full.safetensors")
    out = tmp_path / "g.safetensors"
    distill_ufogen(cfg, _tc(2), _data(), teacher, out=out)
    resumed = distill_ufogen(cfg, _tc(4), _data(), teacher, out=out, resume=True)
    for a, b in zip(full.raw.state_dict().values(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.den.state_dict().values(), resumed.den.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    d_full = torch.load(tmp_path / "full.ckpt.pt", weights_only=True)["objective"]["disc"]
    d_res = torch.load(out.with_suffix(".ckpt.pt"), weights_only=True)["objective"]["disc"]
    for k, v in d_full["net"].items():
        assert torch.equal(v, d_res["net"][k])
    assert d_full["optimizer"]["state"] and all(
        torch.equal(d_full["optimizer"]["state"][i]["exp_avg"], d_res["optimizer"]["state"][i]["exp_avg"])
        for i in d_full["optimizer"]["state"])
    with pytest.raises(fs.errors.CheckpointError, match="gap"):
        distill_ufogen(UFOGenConfig(r1=0.05, gap=500), _tc(6), _data(), teacher, out=out, resume=True)


def test_sampling_shapes_determinism_and_one_step(teacher, tmp_path):
    res = distill_ufogen(UFOGenConfig(), _tc(2), _data(), teacher)
    path = tmp_path / "u.safetensors"
    save_model(path, res.den, res.den.config)
    G = fs.zoo.load(path)
    assert fs.kinds.model_kind(G).name == "ufogen"
    for k in (1, 2, 4):
        a, b = fs.generate(G, 10, nfe=k, seed=3), fs.generate(G, 10, nfe=k, seed=3, batch=4)
        assert a.shape == (10, 1, 4, 4) and torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(a, fs.generate(G, 10, nfe=k, seed=4))
    one = fs.generate(G, 6, nfe=1, seed=0)
    z = fs.seed.noise(6, 0, (1, 4, 4), 80.0)
    with torch.no_grad():
        torch.testing.assert_close(one, G(z, 80.0).clamp(-1, 1))
    x = _data().x[:6]
    y1, y2 = img2img(G, x, 2.5, seed=1), img2img(G, x, 2.5, seed=1)
    assert y1.shape == x.shape and torch.equal(y1, y2) and not torch.equal(y1, img2img(G, x, 2.5, seed=2))


@pytest.mark.skipif("digits-ufogen" not in fs.zoo.names(), reason="digits-ufogen not shipped")
def test_the_shipped_generator_keeps_the_public_contract():
    G = fs.zoo.load("digits-ufogen")
    assert fs.kinds.model_kind(G).name == "ufogen" and G.shape == (1, 8, 8)
    x = fs.generate("digits-ufogen", 8, nfe=1)
    assert x.shape == (8, 1, 8, 8) and x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert torch.equal(x, fs.generate("digits-ufogen", 8, nfe=1))
    assert fs.generate("digits-ufogen", 4, nfe=4).shape == (4, 1, 8, 8)
