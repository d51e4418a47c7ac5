"""The losses against closed forms on the analytic oracle (a Gaussian, whose exact denoiser is known)."""

import math

import torch

from fewstep.analytic import GaussianMixture
from fewstep.noise import VPLinear
from fewstep.train import edm_loss, vp_loss

SD = 0.5  # sigma_data


def _gaussian(dim: int = 4, std: float = SD) -> GaussianMixture:
    return GaussianMixture(torch.zeros(1, dim), torch.tensor([std]), torch.ones(1))


def test_edm_loss_of_exact_denoiser_is_one_per_dimension():
    # data N(0, sd^2 I): E[x0|x] = sd^2/(sd^2+s^2) x, posterior variance sd^2 s^2/(sd^2+s^2) per dim, and
    # lambda(s) = (s^2+sd^2)/(s sd)^2, so lambda * posterior variance = 1 for every sigma (EDM, Table 1).
    den = _gaussian()
    g = torch.Generator().manual_seed(0)
    x0 = den.sample(20000, generator=g).double()
    loss = edm_loss(den, x0, generator=torch.Generator().manual_seed(1), sigma_data=SD)
    assert abs(loss.mean().item() - 1.0) < 4 * loss.std().item() / math.sqrt(len(loss)) + 1e-3


def test_edm_loss_is_minimised_by_the_exact_denoiser():
    den = _gaussian()
    x0 = den.sample(8192, generator=torch.Generator().manual_seed(0)).double()

    def perturbed(kind):
        def D(x, sigma, cond=None):
            out = den(x, sigma)
            return out + 0.05 if kind == "shift" else out * 1.1
        return D

    exact = edm_loss(den, x0, generator=torch.Generator().manual_seed(3)).mean()
    for kind in ("shift", "scale"):  # same noise draws (common random numbers)
        worse = edm_loss(perturbed(kind), x0, generator=torch.Generator().manual_seed(3)).mean()
        assert worse > exact


def test_vp_loss_of_exact_denoiser_matches_quadrature():
    # eps_hat - eps = (x0 - D)/sigma, so E||eps_hat - eps||^2 / d = E_t[ s0^2 / (s0^2 + sigma(t)^2) ].
    s0, proc = 0.8, VPLinear()
    den = _gaussian(std=s0)
    x0 = den.sample(20000, generator=torch.Generator().manual_seed(0)).double()
    loss = vp_loss(den, x0, generator=torch.Generator().manual_seed(1), process=proc)
    t = torch.linspace(proc.t_min, proc.t_max, 20001, dtype=torch.float64)
    f = s0**2 / (s0**2 + proc.sigma(t) ** 2)
    expected = torch.trapezoid(f, t).item() / (proc.t_max - proc.t_min)
    assert abs(loss.mean().item() - expected) < 4 * loss.std().item() / math.sqrt(len(loss))
