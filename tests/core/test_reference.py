"""reference_solve vs the closed-form Gaussian PF-ODE: x(s) = mu + sqrt((c^2+s^2)/(c^2+s0^2)) (x - mu)."""

import torch

import fewstep as fs


def test_gaussian_flow_closed_form():
    mu, s = torch.tensor([[0.5, -1.0]]), 0.3
    gm = fs.analytic.GaussianMixture(mu, torch.tensor([s]), sigma_min=1e-3)
    x = torch.randn(5, 2, dtype=torch.float64) * 20
    for s0, s1 in [(20.0, 1.0), (20.0, 0.01), (3.0, 0.5)]:
        ref = mu + ((s**2 + s1**2) / (s**2 + s0**2)) ** 0.5 * (x - mu)
        torch.testing.assert_close(fs.reference_solve(gm, x, s0, s1), ref.double(), rtol=1e-7, atol=1e-7)
    # to sigma = 0: integrate to sigma_min, then x0 = D(x, sigma_min)
    x_min = mu + ((s**2 + 1e-6) / (s**2 + 400.0)) ** 0.5 * (x - mu)
    ref0 = mu + s**2 / (s**2 + 1e-6) * (x_min - mu)
    torch.testing.assert_close(fs.reference_solve(gm, x, 20.0, 0.0), ref0.double(), rtol=1e-7, atol=1e-7)


def test_rejects_bad_range():
    import pytest

    gm = fs.analytic.toy_mixture()
    with pytest.raises(ValueError, match="sigma_from"):
        fs.reference_solve(gm, torch.zeros(2, 2), 1.0, 2.0)
    with pytest.raises(TypeError, match="sigma_min"):
        fs.reference_solve(lambda x, s: x, torch.zeros(2, 2), 2.0, 1.0)
