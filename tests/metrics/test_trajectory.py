"""Trajectory RMS: zero for the reference itself; the reference end point against the Gaussian closed form."""

import math

import pytest
import torch

import fewstep as fs
from fewstep.metrics.trajectory import reference_x0, rms, trajectory_error


def test_rms_definition():
    a = torch.zeros(3, 1, 2, 2)
    b = a.clone()
    b[1] += 2.0
    b[2, 0, 0, 0] = 4.0  # one of 4 entries off by 4: sqrt(16 / 4) = 2
    assert rms(a, b).tolist() == [0.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="shapes differ"):
        rms(a, b[:2])


def gaussian():
    # p(x0) = N(mu, s^2 I) in 3-D; the PF-ODE is x(sigma) = mu + sqrt(s^2+sigma^2)/sqrt(s^2+sigma_T^2) (x_T - mu)
    mu, s = torch.tensor([[0.5, -1.0, 2.0]]), 0.7
    return fs.analytic.GaussianMixture(mu, torch.tensor([s]), sigma_min=0.002, sigma_max=20.0), mu, s


def test_reference_end_point_matches_closed_form_and_chunking():
    den, mu, s = gaussian()
    x_T = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20
    ref = reference_x0(den, x_T, 20.0, chunk=4)
    smin = den.sigma_min
    x_min = mu + math.sqrt(s**2 + smin**2) / math.sqrt(s**2 + 400) * (x_T - mu)
    want = mu + s**2 / (s**2 + smin**2) * (x_min - mu)  # the final step x0 = D(x, sigma_min)
    assert rms(ref, want).max() < 1e-6
    assert rms(ref, ref).max() == 0


def test_solver_error_shrinks_with_nfe():
    den, _, _ = gaussian()
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 20
    ref = reference_x0(den, x_T, 20.0)
    errs = [trajectory_error(den, fs.plans.get("heun", nfe=n, sigma_max=20.0), x_T, ref=ref)["rms"]
            for n in (5, 11, 21)]
    assert errs[0] > errs[1] > errs[2] > 0
    out = trajectory_error(den, fs.plans.get("heun", nfe=5, sigma_max=20.0), x_T, ref=ref)
    assert out["nfe"] == 5 and out["per_sample"].shape == (8,)
