"""Consistency maths against closed forms: the exact consistency function of a Gaussian, the boundary condition,
teacher-step order, schedules, and Algorithm 1's output distribution."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import fewstep as fs
from fewstep.distill import GaussianConsistency, consistency_loss, distance, multistep, onestep, teacher_step
from fewstep.distill import schedules as S
from fewstep.io import build_denoiser

MU, STD, EPS, T = 0.3, 0.5, 0.002, 80.0


def _gauss_teacher() -> fs.analytic.GaussianMixture:
    return fs.analytic.GaussianMixture(torch.tensor([[MU]]), torch.tensor([STD]), sigma_min=EPS, sigma_max=T)


def _cd_loss(f, N: int, n: int = 4000, solver: str = "heun") -> float:
    g = torch.Generator().manual_seed(0)
    grid = S.cm_grid(N, EPS, T)
    x0 = MU + STD * torch.randn(n, 1, generator=g, dtype=torch.float64)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64)
    i = torch.randint(0, N - 1, (n,), generator=g)
    loss = consistency_loss(f, f, x0, grid[i + 1], grid[i], z, teacher=_gauss_teacher(), solver=solver)
    return loss.mean().item()


def test_exact_consistency_function_has_zero_cd_loss_perturbed_does_not():
    exact, wrong = GaussianConsistency(MU, STD, EPS, T), GaussianConsistency(MU, STD, EPS, T, perturb=0.2)
    l_exact, l_wrong = _cd_loss(exact, 72), _cd_loss(wrong, 72)
    assert l_wrong > 1e-6
    assert l_exact < 1e-3 * l_wrong
    # the exact function's residual is only the Heun step's local error O(h^3): the L2 loss falls like N^-6
    # (at least N^-5 here), while a wrong function's loss falls like N^-2 (differences of f between neighbours)
    assert _cd_loss(exact, 18) > 4**5 * l_exact
    assert _cd_loss(wrong, 18) < 4**3 * l_wrong


def test_skipping_steps_chains_teacher_steps_and_keeps_the_exact_function_a_fixed_point():
    from fewstep.distill.consistency import ConsistencyConfig, ConsistencyObjective

    exact = GaussianConsistency(MU, STD, EPS, T)
    teacher = _gauss_teacher()
    x0 = MU + STD * torch.randn(512, 1, generator=torch.Generator().manual_seed(3))
    for skip in (1, 4):
        cc = ConsistencyConfig(mode="cd", N=40, skip=skip, dist="l2")
        seen = {}

        def f(x, sigma, cond=None, seen=seen):  # record what the student and the target are asked for
            seen.setdefault("calls", []).append((x.clone(), sigma.clone()))
            return exact(x, sigma)

        loss = ConsistencyObjective(cc, 10, teacher)(f, x0, None, torch.Generator().manual_seed(1), 0)
        (x_hi, s_hi), (x_lo, s_lo) = seen["calls"]
        grid = S.cm_grid(40, EPS, T).to(s_hi.dtype)
        i_hi, i_lo = (torch.searchsorted(grid, s) for s in (s_hi, s_lo))
        assert torch.equal(i_hi - i_lo, torch.full_like(i_hi, skip))  # the target lies `skip` intervals below
        x = x_hi
        for j in range(skip):  # ... reached by `skip` single teacher steps along the grid
            x = teacher_step(teacher, x, grid[i_hi - j], grid[i_hi - j - 1])
        torch.testing.assert_close(x_lo, x)
        wrong = GaussianConsistency(MU, STD, EPS, T, perturb=0.2)
        l_wrong = ConsistencyObjective(cc, 10, teacher)(wrong, x0, None, torch.Generator().manual_seed(1), 0)
        assert loss.mean() < 0.02 * l_wrong.mean()  # the exact consistency function is a fixed point either way
    with pytest.raises(ValueError, match="skip"):
        ConsistencyConfig(mode="ict", skip=2)


def test_boundary_condition_is_exact_for_a_random_student():
    cfg = {"net": {"class": "unet", "kwargs": {"channels": 16, "channel_mult": [1, 2], "num_blocks": 1}},
           "precond": {"name": "consistency", "kwargs": {"sigma_min": EPS, "sigma_data": 0.5}},
           "sigma_min": EPS, "sigma_max": T, "shape": [1, 8, 8]}
    f = build_denoiser(cfg)
    for p in f.parameters():  # make the net output non-zero
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(f(x, EPS), x)
    assert not torch.allclose(f(x, 1.0), x)


@pytest.mark.parametrize("solver,order", [("heun", 3), ("dpm_solver_pp_2s", 3), ("euler", 2)])
def test_teacher_step_local_order(solver, order):
    den = _gauss_teacher()
    x = MU + math.sqrt(STD**2 + 1.0) * torch.randn(256, 1, generator=torch.Generator().manual_seed(1),
                                                    dtype=torch.float64)
    exact = GaussianConsistency(MU, STD, EPS, T)

    def err(h: float) -> float:
        s, t = torch.full((256,), 1.0, dtype=torch.float64), torch.full((256,), 1.0 - h, dtype=torch.float64)
        # exact transport of a Gaussian PF-ODE: x_t - mu = sqrt(s^2 + t^2) / sqrt(s^2 + s_from^2) (x - mu)
        truth = MU + math.sqrt(STD**2 + (1 - h) ** 2) / math.sqrt(STD**2 + 1) * (x - MU)
        return (teacher_step(den, x, s, t, solver) - truth).abs().max().item()

    ratio = err(0.2) / err(0.1)
    assert 2 ** (order - 0.5) < ratio < 2 ** (order + 0.7)
    assert exact(x, 1.0).shape == x.shape


@pytest.mark.parametrize("name", ["heun", "euler", "ddim", "dpm_solver_pp_2s", "dpm_solver_3s"])
def test_teacher_step_is_the_engine_step_per_sample_in_batched_calls(name):
    from fewstep import solvers
    from fewstep.distill.teacher import ONE_STEP_NFE, one_step_plan

    den, calls = _gauss_teacher(), []

    def counted(x, sigma, cond=None):
        calls.append(tuple(sigma.shape))
        return den(x, sigma, cond)

    counted.sigma_min, counted.sigma_max = den.sigma_min, den.sigma_max
    grid = S.cm_grid(6, EPS, T)
    n = torch.tensor([0, 4, 2, 4, 1, 0, 3, 2])
    x = torch.randn(8, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * grid[n + 1, None]
    mine = teacher_step(counted, x, grid[n + 1], grid[n], name)
    assert calls == [(8,)] * ONE_STEP_NFE[name]  # one batched call per evaluation, whatever the mix of pairs
    for i in range(8):
        plan = one_step_plan(name, float(grid[n[i] + 1]), float(grid[n[i]]))
        assert len(plan.steps) == 1 and plan.nfe == ONE_STEP_NFE[name]
        torch.testing.assert_close(mine[i:i + 1], solvers.sample(den, x[i:i + 1], plan), rtol=1e-12, atol=1e-12)
    with pytest.raises(KeyError, match="known"):
        teacher_step(den, x, grid[n + 1], grid[n], "dpm_solver_pp_2m")


def test_algorithm1_with_exact_function_gives_the_closed_form_mean_and_std():
    f = GaussianConsistency(MU, STD, EPS, T)
    n, taus = 40000, [T, 1.5, 0.3]
    g = torch.Generator().manual_seed(2)
    x = multistep(f, T * torch.randn(n, 1, generator=g, dtype=torch.float64), taus, generator=g)
    # propagate mean m and variance v through Alg. 1 in closed form: x_T ~ N(0, T^2)
    c = lambda s: math.sqrt(STD**2 + EPS**2) / math.sqrt(STD**2 + s**2)  # noqa: E731
    m, v = MU + c(T) * (0 - MU), c(T) ** 2 * T**2
    for tau in taus[1:]:
        m, v = MU + c(tau) * (m - MU), c(tau) ** 2 * (v + tau**2 - EPS**2)
    assert abs(x.mean().item() - m) < 4 * math.sqrt(v / n)
    assert abs(x.std().item() - math.sqrt(v)) < 4 * math.sqrt(v / (2 * n))
    assert abs(math.sqrt(v) - math.sqrt(STD**2 + EPS**2)) < 1e-3  # and that is the data's std
    one = onestep(f, T * torch.randn(n, 1, generator=g, dtype=torch.float64))
    assert abs(one.std().item() - c(T) * T) < 4 * c(T) * T / math.sqrt(2 * n)


def test_schedules_match_the_papers_formulas():
    grid = S.cm_grid(18)
    assert grid[0].item() == pytest.approx(EPS) and grid[-1].item() == pytest.approx(T)
    assert (grid[1:] > grid[:-1]).all()
    K = 8000
    assert S.ict_scales(0, K) == 11 and S.ict_scales(K - 1, K) == 1281
    assert S.ict_scales(K // 8, K) == 21  # doubles every K' = K / (log2(128) + 1) steps
    assert S.ct_scales(0, K, 2, 150) == 2 and S.ct_scales(K, K, 2, 150) == 151
    assert S.ct_mu(2, 2, 0.9) == pytest.approx(0.81)
    p = S.ict_index_probs(S.cm_grid(11))
    assert p.sum().item() == pytest.approx(1.0) and (p >= 0).all()
    # the mass of interval i is the lognormal probability of (sigma_i, sigma_{i+1}] renormalised
    from scipy.stats import lognorm
    cdf = lognorm(s=2.0, scale=math.exp(-1.1)).cdf(S.cm_grid(11).numpy())
    torch.testing.assert_close(p, torch.from_numpy((cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])))
    w = S.weighting("ict", torch.tensor([2.0]), torch.tensor([1.5]))
    assert w.item() == pytest.approx(2.0)


def test_pseudo_huber_limits():
    a = torch.zeros(3, 64)
    b = torch.full((3, 64), 1e-4)
    c = 0.00054 * 8
    # small differences: ~ ||a-b||^2 / (2c); large: ~ ||a-b|| - c
    torch.testing.assert_close(distance("pseudo_huber", a, b), torch.full((3,), 64e-8 / (2 * c), dtype=torch.float64),
                               rtol=1e-2, atol=0)
    big = torch.full((3, 64), 10.0)
    torch.testing.assert_close(distance("pseudo_huber", a, big), torch.full((3,), 80.0 - c, dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(KeyError, match="unknown distance"):
        distance("lpips_vgg", a, b)
    with pytest.raises(ValueError, match="lpips needs two image batches"):
        distance("lpips", a, b)  # vectors have no perceptual net


def test_online_and_target_calls_share_dropout_masks():
    cfg = {"net": {"class": "mlp", "kwargs": {"dim": 4, "hidden": 32, "depth": 2}},
           "precond": {"name": "consistency", "kwargs": {"sigma_min": EPS, "sigma_data": 0.5}},
           "sigma_min": EPS, "sigma_max": T, "shape": [4]}
    f = build_denoiser(cfg).train()
    for p in f.parameters():
        torch.nn.init.normal_(p, std=0.3)
    f.net.blocks[0].fc1 = torch.nn.Sequential(f.net.blocks[0].fc1, torch.nn.Dropout(0.5))
    x0, z, s = torch.randn(8, 4), torch.randn(8, 4), torch.full((8,), 1.0, dtype=torch.float64)
    # sigma_lo = sigma_hi and no teacher: target input = online input, so only unshared dropout could differ
    assert consistency_loss(f, f, x0, s, s, z).abs().max().item() == 0.0
    with torch.no_grad():
        assert not torch.equal(f(x0 + z, s), f(x0 + z, s))  # dropout is active


def test_ternary_search_finds_the_minimum_of_a_unimodal_score():
    from fewstep.distill import search_sigmas, ternary_search

    best, val = ternary_search(lambda s: (math.log(s) - math.log(0.7)) ** 2, 0.01, 80.0, iters=20)
    assert best == pytest.approx(0.7, rel=1e-3) and val < 1e-6
    target = [80.0, 3.0, 0.2]
    sig, v = search_sigmas(lambda s: sum((math.log(a) - math.log(b)) ** 2 for a, b in zip(s, target, strict=True)),
                           3, 0.002, 80.0, iters=20, sweeps=2)
    assert sig[0] == 80.0 and sig[1] == pytest.approx(3.0, rel=1e-2) and sig[2] == pytest.approx(0.2, rel=1e-2)


def test_teacher_trajectories_follow_the_ode_and_the_regression_pins_the_exact_function():
    from fewstep.distill.consistency import ConsistencyConfig, ConsistencyObjective, ode_regression
    from fewstep.distill.teacher import teacher_trajectories

    g = torch.Generator().manual_seed(0)
    x_T = T * torch.randn(2000, 1, generator=g, dtype=torch.float64)

    def error(N: int) -> tuple[Tensor, Tensor, float]:  # the Gaussian's PF-ODE moves x - mu like sqrt(s^2 + sigma^2)
        grid = S.cm_grid(N, EPS, T).flip(0)
        states = teacher_trajectories(_gauss_teacher(), x_T, grid, batch=700)
        gain = ((STD**2 + grid**2) / (STD**2 + T**2)).sqrt()
        return states, grid, (states - MU - (x_T[:, None] - MU) * gain[None, :, None]).abs().max().item()

    states, grid, e72 = error(72)
    assert states.shape == (2000, 72, 1) and torch.equal(states[:, 0], x_T)
    assert e72 < 2e-2 * STD and error(18)[2] > 8 * e72  # Heun: second order in the step
    exact, wrong = GaussianConsistency(MU, STD, EPS, T), GaussianConsistency(MU, STD, EPS, T, perturb=0.2)
    l_exact = ode_regression(exact, states, grid, 4000, torch.Generator().manual_seed(1)).mean()
    l_wrong = ode_regression(wrong, states, grid, 4000, torch.Generator().manual_seed(1)).mean()
    assert l_wrong > 1e-3 and l_exact < 1e-3 * l_wrong  # only the Heun error remains
    # in the objective it adds to the CD loss: zero for the exact function, not for a wrong one
    cc = ConsistencyConfig(mode="cd", N=72, dist="l2", reg=10.0, reg_paths=2000)
    x0 = MU + STD * torch.randn(512, 1, generator=g, dtype=torch.float64)
    obj = ConsistencyObjective(cc, 10, _gauss_teacher(), states)
    with_reg = obj(wrong, x0, None, torch.Generator().manual_seed(2), 0).mean()
    without = ConsistencyObjective(ConsistencyConfig(mode="cd", N=72, dist="l2"), 10, _gauss_teacher())(
        wrong, x0, None, torch.Generator().manual_seed(2), 0).mean()
    assert with_reg > 10 * without
    assert obj(exact, x0, None, torch.Generator().manual_seed(2), 0).mean() < 1e-3 * with_reg
    with pytest.raises(ValueError, match="reg"):
        ConsistencyConfig(mode="ict", reg=1.0)
    with pytest.raises(ValueError, match="bank"):
        ConsistencyObjective(cc, 10, _gauss_teacher())
