"""Empirical convergence order: the log-log slope of error vs NFE equals each plan's declared order.

Oracle: fs.reference_solve (DOP853, float64) on a smooth analytic mixture; both sides end with the same
x0 = D(x(sigma_min)), so the error measures the ODE solve. sigma_max = 80 makes the order-1 warm-up step's
error negligible, so the slope over NFE 32-128 shows the stepping order. iPNDM's fixed Adams-Bashforth
coefficients assume equal steps; on a geometric grid it loses its nominal order 4: only convergence is checked.
ipndm_v (the same multistep with the coefficients of the actual steps) reaches order 4 once its low-order warm
start stops dominating: its slope is measured over NFE 64-192.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fewstep as fs

pytestmark = pytest.mark.slow  # ~45 s: one tight reference solve, 14 plans x 5 NFEs

SMAX, SMIN = 80.0, 0.05
NFES = [32, 48, 64, 96, 128]


@pytest.fixture(scope="module")
def problem():
    den = fs.analytic.toy_mixture(dim=2, k=4, std=0.5, spread=1.0, sigma_min=SMIN, sigma_max=SMAX)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SMAX
    return den, x, fs.reference_solve(den, x, SMAX, 0.0, rtol=1e-11, atol=1e-11)


def _slope(errs):
    return -np.polyfit(np.log(NFES), np.log(errs), 1)[0]


@pytest.mark.parametrize("name", [n for n in fs.plans.names() if n not in ("ipndm", "ipndm_v")])
def test_empirical_order(problem, name):
    den, x, ref = problem
    plans = [fs.plans.get(name, nfe=n, sigma_min=SMIN, sigma_max=SMAX) for n in NFES]
    errs = [(fs.sample(den, x, p) - ref).abs().max().item() for p in plans]
    declared = plans[0].order
    assert abs(_slope(errs) - declared) <= 0.5, (errs, _slope(errs), declared)


def test_dpmpp_3m_exact_is_third_order(problem):
    den, x, ref = problem
    errs = [(fs.sample(den, x, fs.plans.get("dpm_solver_pp_3m", nfe=n, sigma_min=SMIN, sigma_max=SMAX,
                                            exact=True)) - ref).abs().max().item() for n in NFES]
    assert abs(_slope(errs) - 3) <= 0.5, errs


def test_ipndm_converges_on_logsnr(problem):
    """iPNDM's equal-step coefficients on a geometric grid: convergent, but below its nominal order 4."""
    den, x, ref = problem
    errs = [(fs.sample(den, x, fs.plans.get("ipndm", nfe=n, sigma_min=SMIN, sigma_max=SMAX)) - ref).abs().max().item()
            for n in NFES]
    assert _slope(errs) >= 1.2, (errs, _slope(errs))


@pytest.mark.parametrize("grid", ["logsnr", "karras"])
def test_ipndm_v_reaches_its_order_on_unequal_steps(problem, grid):
    """Variable-step Adams-Bashforth in sigma (ipndm_v): empirical order >= 3.5 where equal-step iPNDM reaches ~1.7."""
    den, x, ref = problem
    nfes = [64, 96, 128, 192]
    errs = [(fs.sample(den, x, fs.plans.get("ipndm_v", nfe=n, sigma_min=SMIN, sigma_max=SMAX, grid=grid)) - ref)
            .abs().max().item() for n in nfes]
    slope = -np.polyfit(np.log(nfes), np.log(errs), 1)[0]
    assert slope >= 3.5, (errs, slope)
