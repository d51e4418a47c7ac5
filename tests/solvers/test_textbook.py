"""Plans equal independent textbook implementations written from the papers' equations (float64, rel <= 1e-6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fewstep as fs
from fewstep.solvers.plan import Plan, Step


@pytest.fixture(scope="module")
def den():
    return fs.analytic.toy_mixture(dim=3, k=5, std=0.3)


def _x(sig):
    return torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sig[0]


def _close(a, b):
    assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-6


def ddim(den, x, s):
    """Song et al. 2021, Eq. 12 (eta = 0) in VE coordinates: x' = x0 + sigma' eps."""
    for i in range(len(s) - 1):
        d = den(x, s[i])
        x = d + s[i + 1] * (x - d) / s[i]
    return x


def heun_edm(den, x, s):
    """Karras et al. 2022, Algorithm 1 (S_churn = 0): Euler to 0 on the last step."""
    for i in range(len(s) - 1):
        d = (x - den(x, s[i])) / s[i]
        x_next = x + (s[i + 1] - s[i]) * d
        if s[i + 1] > 0:
            d2 = (x_next - den(x_next, s[i + 1])) / s[i + 1]
            x_next = x + (s[i + 1] - s[i]) * (d + d2) / 2
        x = x_next
    return x


def dpmpp_2m(den, x, s):
    """Lu et al. 2022b, Algorithm 2 (k-diffusion sample_dpmpp_2m), order 1 on the first and last step."""
    old = None
    for i in range(len(s) - 1):
        d = den(x, s[i])
        if s[i + 1] == 0:
            x = d
            continue
        h = math.log(s[i] / s[i + 1])
        if old is None or i == len(s) - 2:
            dd = d
        else:
            r = math.log(s[i - 1] / s[i]) / h
            dd = (1 + 1 / (2 * r)) * d - old / (2 * r)
        x = (s[i + 1] / s[i]) * x - math.expm1(-h) * dd
        old = d
    return x


def dpm_solver_2(den, x, s, r1=0.5):
    """Lu et al. 2022a, Algorithm 1 (DPM-Solver-2, noise prediction) on every step but the last (DDIM)."""
    for i in range(len(s) - 1):
        t_s, t_t = s[i], s[i + 1]
        eps = (x - den(x, t_s)) / t_s
        if t_t == 0:
            x = x - t_s * eps
            continue
        h = math.log(t_s / t_t)
        s1 = t_s * math.exp(-r1 * h)
        u = x - s1 * math.expm1(r1 * h) * eps
        eps1 = (u - den(u, s1)) / s1
        x = x - t_t * math.expm1(h) * eps - t_t / (2 * r1) * math.expm1(h) * (eps1 - eps)
    return x


def dpm_solver_3(den, x, s, r1=1 / 3, r2=2 / 3):
    """Lu et al. 2022a, Algorithm 2 (DPM-Solver-3, noise prediction), DDIM on the last step."""
    for i in range(len(s) - 1):
        t_s, t_t = s[i], s[i + 1]
        eps = (x - den(x, t_s)) / t_s
        if t_t == 0:
            x = x - t_s * eps
            continue
        h = math.log(t_s / t_t)
        s1, s2 = t_s * math.exp(-r1 * h), t_s * math.exp(-r2 * h)
        u1 = x - s1 * math.expm1(r1 * h) * eps
        D1 = (u1 - den(u1, s1)) / s1 - eps
        u2 = x - s2 * math.expm1(r2 * h) * eps - s2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1) * D1
        D2 = (u2 - den(u2, s2)) / s2 - eps
        x = x - t_t * math.expm1(h) * eps - t_t / r2 * (math.expm1(h) / h - 1) * D2
    return x


def ipndm(den, x, s, max_order=4):
    """Zhang & Chen 2023 iPNDM as in zju-pi/diff-sampler: Adams-Bashforth in sigma, fixed coefficients."""
    buf = []
    for i in range(len(s) - 1):
        d = (x - den(x, s[i])) / s[i]
        o = min(max_order, i + 1)
        c = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}[o]
        comb = c[0] * d + sum(cj * b for cj, b in zip(c[1:], reversed(buf[-(o - 1):]), strict=False)) if o > 1 else d
        x = x + (s[i + 1] - s[i]) * comb
        buf.append(d)
    return x


def ipndm_v(den, x, s, max_order=4):
    """Variable-step Adams-Bashforth in sigma: integrate the Lagrange polynomial through the last eps values over the
    actual step (numpy), x0 = D on the step to 0 (zju-pi/diff-sampler's iPNDM_v with exact coefficients)."""
    buf = []
    for i in range(len(s) - 1):
        D = den(x, s[i])
        buf.append((s[i], (x - D) / s[i]))
        if s[i + 1] == 0:
            x = D
            continue
        nodes = buf[-min(max_order, i + 1):]
        step = torch.zeros_like(x)
        for j, (sj, dj) in enumerate(nodes):
            ell = np.poly1d([1.0])
            for m, (sm, _) in enumerate(nodes):
                if m != j:
                    ell *= np.poly1d([1.0, -sm]) / (sj - sm)
            w = ell.integ()
            step += (w(s[i + 1]) - w(s[i])) * dj
        x = x + step
    return x


# (constructor, its options, the textbook sampler written above from the paper, NFEs to try)
CASES = [
    *[(name, {"grid": grid}, ddim, (2, 5, 9)) for name in ("ddim", "euler") for grid in ("logsnr", "karras")],
    ("heun", {"grid": "karras"}, heun_edm, (3, 7, 11)),
    ("dpm_solver_pp_2m", {"lower_order_final": False}, dpmpp_2m, (3, 6, 10, 16)),
    ("ipndm", {"grid": "karras"}, ipndm, (2, 5, 12)),
    *[("ipndm_v", {"grid": grid}, ipndm_v, (2, 5, 12)) for grid in ("karras", "logsnr")],
]


@pytest.mark.parametrize("name,options,textbook,nfe",
                         [(n, o, t, k) for n, o, t, ks in CASES for k in ks],
                         ids=lambda v: v if isinstance(v, str | int) else "")
def test_constructor_equals_textbook(den, name, options, textbook, nfe):
    plan = fs.plans.get(name, nfe=nfe, **options)
    s = plan.sigmas.tolist()
    _close(fs.sample(den, _x(s), plan), textbook(den, _x(s), s))


@pytest.mark.parametrize("n", [2, 4])
def test_dpm_solver_2_and_3(den, n):
    s = fs.grids.logsnr(n, 0.002, 80.0).tolist()
    two = Plan(torch.tensor(s), tuple(Step(order=2, prediction="noise", ratios=(0.5,), relaxation="dpm_solver_2")
                                    for _ in range(n - 1)) + (Step(prediction="noise"),))
    _close(fs.sample(den, _x(s), two), dpm_solver_2(den, _x(s), s))
    three = Plan(torch.tensor(s), tuple(Step(order=2, prediction="noise", ratios=(1 / 3, 2 / 3), points=(2,))
                                      for _ in range(n - 1)) + (Step(prediction="noise"),))
    _close(fs.sample(den, _x(s), three), dpm_solver_3(den, _x(s), s))


def test_phi_series_matches_closed_form():
    from fewstep.solvers.engine import phi

    for z in (-3.0, -0.4, -1e-3, 1e-3, 0.4, 2.0):
        assert abs(phi(1, z) - math.expm1(z) / z) < 1e-13
        assert abs(phi(2, z) - (math.expm1(z) - z) / z**2) < 1e-9
