"""Noise processes against closed forms and diffusers' own tables."""

import math

import pytest
import torch

from fewstep import noise


def test_vp_discrete_matches_diffusers_and_roundtrips():
    from diffusers import DDPMScheduler

    for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
        d = DDPMScheduler(beta_schedule=sched, beta_start=1e-4 if sched == "linear" else 8.5e-4,
                          beta_end=0.02 if sched == "linear" else 0.012)
        p = noise.VPDiscrete(d.alphas_cumprod)
        acp = d.alphas_cumprod.double()
        t = torch.tensor([0.0, 17.0, 500.0, 999.0])
        torch.testing.assert_close(p.sigma(t), ((1 - acp[t.long()]) / acp[t.long()]).sqrt(), rtol=1e-6, atol=0)
        tc = torch.tensor([0.0, 3.3, 250.7, 998.2], dtype=torch.float64)
        torch.testing.assert_close(p.t(p.sigma(tc)), tc, rtol=1e-9, atol=1e-9)
    ours = noise.VPDiscrete.from_betas(schedule="linear").alphas_cumprod
    torch.testing.assert_close(ours, DDPMScheduler().alphas_cumprod.double(), rtol=1e-6, atol=0)


def test_vp_linear_is_integral_of_beta():
    from scipy.integrate import quad

    p = noise.VPLinear()
    for t in [0.05, 0.3, 0.9]:
        integral, _ = quad(lambda u: p.beta_min + u * (p.beta_max - p.beta_min), 0, t)
        alpha_bar = math.exp(-integral)
        assert float(p.sigma(t)) == pytest.approx(math.sqrt((1 - alpha_bar) / alpha_bar), rel=1e-10)
        assert float(p.t(p.sigma(t))) == pytest.approx(t, rel=1e-10)


def test_vp_cosine_alpha_bar():
    p = noise.VPCosine()
    f = lambda t: math.cos((t + p.s) / (1 + p.s) * math.pi / 2) ** 2  # noqa: E731
    for t in [0.1, 0.5, 0.9]:
        ab = f(t) / f(0)
        assert float(p.sigma(t)) == pytest.approx(math.sqrt((1 - ab) / ab), rel=1e-10)
        assert float(p.t(p.sigma(t))) == pytest.approx(t, rel=1e-9)


def test_flow_and_ve():
    p = noise.RectifiedFlow()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    s = p.sigma(t)
    # x_t = (1 - t) x0 + t n  ==  alpha (x0 + sigma n) with alpha = 1 - t, sigma = t / (1 - t)
    torch.testing.assert_close(p.alpha(s) * s, t)
    torch.testing.assert_close(p.alpha(s), 1 - t)
    torch.testing.assert_close(p.t(s), t)
    assert float(noise.VE().alpha(3.0)) == 1.0


def test_registry_errors():
    with pytest.raises(KeyError, match="known"):
        noise.get("nope")
    with pytest.raises(ValueError):
        noise.VPDiscrete(torch.tensor([0.9, 1.2]))
