"""The analytic oracle against Tweedie's formula and closed forms."""

import pytest
import torch

import fewstep as fs


def test_single_gaussian_closed_form():
    mu, s = torch.tensor([[1.0, -2.0, 0.5]]), 0.7
    gm = fs.analytic.GaussianMixture(mu, torch.tensor([s]))
    x = torch.randn(6, 3, dtype=torch.float64)
    sigma = torch.linspace(0.1, 5, 6, dtype=torch.float64)
    ref = mu + s**2 / (s**2 + sigma[:, None] ** 2) * (x - mu)
    torch.testing.assert_close(gm(x, sigma), ref.double())


@pytest.mark.parametrize("diag", [False, True])
def test_mixture_denoiser_is_tweedie(diag):
    # E[x0 | x] = x + sigma^2 grad log p_sigma(x)  (Tweedie / Robbins)
    g = torch.Generator().manual_seed(1)
    K, D = 4, 5
    stds = torch.rand(K, D, generator=g) + 0.2 if diag else torch.rand(K, generator=g) + 0.2
    gm = fs.analytic.GaussianMixture(torch.randn(K, D, generator=g) * 2, stds, torch.rand(K, generator=g) + 0.1)
    x = torch.randn(8, D, dtype=torch.float64, requires_grad=True)
    for sigma in [0.05, 0.8, 10.0]:
        (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(gm(x.detach(), sigma), x.detach() + sigma**2 * grad, rtol=1e-8, atol=1e-8)


def test_sampling_moments_and_image_shapes():
    gm = fs.analytic.GaussianMixture(torch.zeros(1, 1, 4, 4) + 3.0, torch.tensor([2.0]))
    x = gm.sample(20000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20000, 1, 4, 4)
    assert x.mean().item() == pytest.approx(3.0, abs=0.05)
    assert x.std().item() == pytest.approx(2.0, abs=0.05)


def test_empirical_snaps_to_nearest_point():
    data = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-4.0, 3.0]])
    den = fs.analytic.empirical(data)
    out = den(torch.tensor([[4.6, 5.3], [-3.0, 2.0]]), 0.05)
    torch.testing.assert_close(out, torch.tensor([[5.0, 5.0], [-4.0, 3.0]]))


def test_bad_shapes():
    with pytest.raises(ValueError, match="stds"):
        fs.analytic.GaussianMixture(torch.zeros(3, 2), torch.ones(2))
    gm = fs.analytic.toy_mixture(dim=2)
    with pytest.raises(ValueError, match="shape"):
        gm(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        fs.analytic.GaussianMixture(torch.tensor([[float("nan"), 0.0]]), 1.0)
