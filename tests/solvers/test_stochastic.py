"""Stochastic step kinds equal diffusers' own schedulers and the papers' algorithms given the same noise, draw
per-sample noise (a sample never depends on its batch) and stay plain JSON data.

diffusers runs on the analytic denoiser as in test_diffusers.py (a VP "sample" model on float64 tables, grids read
back with `anchors.grid`); Euler ancestral has no "sample" prediction, so it gets eps = (x - D) / sigma. Each
diffusers step draws with the same torch.Generator (or is handed the same `variance_noise`) as fewstep's engine.
"""

from __future__ import annotations

import math

import pytest
import torch

import fewstep as fs
from fewstep.bench import anchors
from fewstep.errors import PlanError
from fewstep.solvers.plan import Plan, Step
from fewstep.solvers.stochastic import Given

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def den():
    return fs.analytic.toy_mixture(dim=3, k=4, std=0.3, sigma_min=0.002, sigma_max=200.0)


def _noise(n=16, dim=3, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rel(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def _vp_loop(sched, den, x_ve, step_kw, model=None):
    """diffusers' loop on the VP latent x = alpha x_VE; D(x_VE, sigma_k) is the model output (or model(D, x, k))."""
    sig = anchors.grid(sched)
    scale = [1 / math.sqrt(1 + s**2) for s in sig]
    x = x_ve * scale[0]
    for k, t in enumerate(sched.timesteps):
        D = den(x / scale[k], torch.full((x.shape[0],), sig[k], dtype=x.dtype))
        x = sched.step(D if model is None else model(D, x, k), t, x, **step_kw(k)).prev_sample
    return x / scale[-1]


def _float64(sched, n):
    sched.set_timesteps(n)
    for attr in ("sigmas", "alphas_cumprod"):
        if torch.is_tensor(getattr(sched, attr, None)):
            setattr(sched, attr, getattr(sched, attr).to(torch.float64))
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = torch.as_tensor(sched.final_alpha_cumprod, dtype=torch.float64)
    return sched


@pytest.mark.parametrize("n", [3, 6, 10])
def test_euler_ancestral_equals_diffusers(den, n):
    sched = diffusers.EulerAncestralDiscreteScheduler()
    sched.set_timesteps(n)
    sig = [float(v) for v in sched.sigmas]
    x = _noise() * sig[0]
    g = torch.Generator().manual_seed(7)
    for k, t in enumerate(sched.timesteps):
        sched.scale_model_input(x, t)
        x = sched.step((x - den(x, sig[k])) / sig[k], t, x, generator=g).prev_sample
    ours = fs.sample(den, _noise() * sig[0], fs.plans.get("euler_ancestral", nfe=n, sigmas=sig),
                     generator=torch.Generator().manual_seed(7))
    assert _rel(ours, x) <= 1e-5  # EulerAncestral.step() computes in float32


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
@pytest.mark.parametrize("n", [3, 6, 10])
def test_sde_dpm_solver_pp_2m_equals_diffusers(den, n, solver_type):
    sched = _float64(anchors.make("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++",
                                  solver_type=solver_type), n)
    sig = anchors.grid(sched)
    z = [torch.randn(16, 3, generator=torch.Generator().manual_seed(100 + k)) for k in range(n)]  # float32, as there
    theirs = _vp_loop(sched, den, _noise() * sig[0], lambda k: {"variance_noise": z[k]})
    plan = fs.plans.get("dpm_solver_pp_2m_sde", nfe=n, sigmas=sig, solver_type=solver_type)
    ours = fs.sample(den, _noise() * sig[0], plan, generator=Given([v.double() for v in z]))
    assert _rel(ours, theirs) <= 5e-7 * n  # DPMSolverMultistep.step() rounds the sample to float32


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("n", [2, 4])
def test_tcd_equals_diffusers(den, n, gamma):
    """TCD (Zheng et al. 2024): DDIM to s = floor((1 - gamma) t_prev), forward noise to t_prev; ends at sigma(t=0)."""
    sched = _float64(anchors.make("TCDScheduler"), n)
    acp = sched.alphas_cumprod
    sigma = lambda t: math.sqrt((1 - acp[t]) / acp[t])  # noqa: E731
    ts = [int(t) for t in sched.timesteps]
    prev = ts[1:] + [0]
    sig = [sigma(t) for t in ts] + [sigma(0)]
    downs = [sigma(math.floor((1 - gamma) * p)) for p in prev]
    x_T = _noise() * sig[0]
    scale = [1 / math.sqrt(1 + s**2) for s in sig]
    x, g = x_T * scale[0], torch.Generator().manual_seed(3)
    for k, t in enumerate(sched.timesteps):
        x = sched.step(den(x / scale[k], sig[k]), t, x, eta=gamma, generator=g).prev_sample
    theirs = x / scale[-1]
    plan = fs.plans.get("consistency", nfe=n, sigmas=sig, gamma=gamma, downs=downs, boundary=0.0)
    ours = fs.sample(den, x_T, plan, generator=torch.Generator().manual_seed(3))
    assert _rel(ours, theirs) <= 1e-10


@pytest.mark.parametrize("n", [1, 2, 4])
def test_lcm_equals_diffusers(den, n):
    """LCM's multistep sampler = the consistency plan with boundary 0 (x0 + sigma z) on the boundary-conditioned
    model c_skip x + c_out D (Luo et al. 2023, Eq. 9 / diffusers LCMScheduler)."""
    sched = _float64(anchors.make("LCMScheduler"), n)
    acp = sched.alphas_cumprod
    ts = [int(t) for t in sched.timesteps]
    sig = [math.sqrt((1 - acp[t]) / acp[t]) for t in ts]
    scalings = {s: sched.get_scalings_for_boundary_condition_discrete(t) for s, t in zip(sig, ts, strict=True)}

    class LCM:
        sigma_min, sigma_max = den.sigma_min, den.sigma_max

        def __call__(self, x, s, cond=None):
            c_skip, c_out = scalings[float(torch.as_tensor(s).flatten()[0])]
            return c_out * den(x, s) + c_skip * x / math.sqrt(1 + float(torch.as_tensor(s).flatten()[0]) ** 2)

    x_T = _noise() * sig[0]
    x, g = x_T / math.sqrt(1 + sig[0] ** 2), torch.Generator().manual_seed(4)
    for k, t in enumerate(sched.timesteps):
        x = sched.step(den(x * math.sqrt(1 + sig[k] ** 2), sig[k]), t, x, generator=g).prev_sample
    plan = fs.plans.get("consistency", nfe=n, sigmas=[*sig, 0.0], boundary=0.0)
    ours = fs.sample(LCM(), x_T, plan, generator=torch.Generator().manual_seed(4))
    assert _rel(ours, x) <= 1e-6  # LCMScheduler's c_skip/c_out are float32


def test_consistency_plan_is_cm_algorithm_1(den):
    """Song et al. 2023, Alg. 1: x <- f(x_T, T); x <- f(x + sqrt(tau^2 - eps^2) z, tau), written out directly."""
    taus, eps = [80.0, 3.0, 0.5, 0.05], 0.002
    z = [_noise(seed=10 + k) for k in range(3)]
    x = den(_noise() * taus[0], taus[0])
    for k, tau in enumerate(taus[1:]):
        x = den(x + math.sqrt(tau**2 - eps**2) * z[k], tau)
    plan = fs.plans.get("consistency", nfe=4, sigmas=[*taus, 0.0], boundary=eps)
    assert _rel(fs.sample(den, _noise() * taus[0], plan, generator=Given(z)), x) <= 1e-12


def edm_algorithm_2(den, x, s, S_churn, S_tmin, S_tmax, S_noise, g):
    """Karras et al. 2022, Algorithm 2 (stochastic Heun; Euler on the step to 0), noise drawn only where gamma > 0."""
    n = len(s) - 1
    for i in range(n):
        gamma = min(S_churn / n, math.sqrt(2) - 1) if S_tmin <= s[i] <= S_tmax else 0.0
        t_hat = s[i] + gamma * s[i]
        if gamma > 0:
            x = x + math.sqrt(t_hat**2 - s[i] ** 2) * S_noise * torch.randn(x.shape, generator=g, dtype=x.dtype)
        d = (x - den(x, t_hat)) / t_hat
        x_next = x + (s[i + 1] - t_hat) * d
        if s[i + 1] != 0:
            x_next = x + (s[i + 1] - t_hat) * (d / 2 + (x_next - den(x_next, s[i + 1])) / s[i + 1] / 2)
        x = x_next
    return x


@pytest.mark.parametrize("churn", [(40.0, 0.05, 50.0, 1.003), (5.0, 0.0, math.inf, 1.0)])
def test_edm_churn_is_algorithm_2(den, churn):
    plan = fs.plans.get("heun", nfe=11, grid="karras", S_churn=churn[0], S_tmin=churn[1], S_tmax=churn[2],
                        S_noise=churn[3])
    s = plan.sigmas.tolist()
    want = edm_algorithm_2(den, _noise() * s[0], s, *churn, torch.Generator().manual_seed(5))
    got = fs.sample(den, _noise() * s[0], plan, generator=torch.Generator().manual_seed(5))
    assert _rel(got, want) <= 1e-12
    assert any(st.churn for st in plan.steps)


STOCHASTIC = [("euler_ancestral", {}), ("dpm_solver_pp_2m_sde", {}), ("consistency", {"gamma": 0.3}),
              ("consistency", {}), ("dpm_solver_pp_3m", {"S_churn": 20.0}), ("euler_ancestral", {"eta": 0.5})]


@pytest.mark.parametrize("name,opts", STOCHASTIC)
def test_sample_noise_depends_on_its_seed_not_the_batch(den, name, opts):
    plan = fs.plans.get(name, nfe=6, sigma_min=0.002, sigma_max=80.0, **opts)
    x, seeds = _noise(9) * 80, fs.seed.seeds_for(9, 3)
    full = fs.sample(den, x, plan, generator=fs.seed.PerSample(seeds))
    parts = torch.cat([fs.sample(den, x[:4], plan, generator=fs.seed.PerSample(seeds[:4])),
                       fs.sample(den, x[4:], plan, generator=fs.seed.PerSample(seeds[4:]))])
    torch.testing.assert_close(full, parts, rtol=1e-12, atol=1e-12)
    other = fs.sample(den, x, plan, generator=fs.seed.PerSample(fs.seed.seeds_for(9, 4)))
    assert not torch.allclose(full, other)  # the noise is really drawn
    assert Plan.from_json(plan.to_json()) == plan  # plans stay data


def test_sde_sampling_matches_a_gaussian_in_distribution():
    """Exact denoiser of N(0.5, 0.3^2): SDE-DPM-Solver++(2M) and Euler ancestral samples have its mean and std."""
    g1 = fs.analytic.GaussianMixture(torch.tensor([[0.5]]), torch.tensor([0.3]), torch.tensor([1.0]))
    x_T = fs.seed.noise(4000, 0, (1,), 80.0).double()
    for name, nfe in (("dpm_solver_pp_2m_sde", 40), ("euler_ancestral", 100)):
        x = fs.sample(g1, x_T, fs.plans.get(name, nfe=nfe), generator=fs.seed.PerSample(fs.seed.seeds_for(4000, 1)))
        assert abs(x.mean().item() - 0.5) < 4 * 0.3 / math.sqrt(4000), name
        assert abs(x.std().item() - 0.3) < 4 * 0.3 / math.sqrt(2 * 4000) + 0.005, name


def test_stochastic_plan_needs_a_generator(den):
    with pytest.raises(ValueError, match="PerSample"):
        fs.sample(den, _noise() * 80, fs.plans.get("euler_ancestral", nfe=4))
    assert not fs.plans.get("heun", nfe=5, S_churn=0.0).stochastic  # S_churn = 0: the ODE plan itself


@pytest.mark.parametrize("step,field", [
    (Step(noise="sde", prediction="noise"), "noise"), (Step(noise="renoise", order=2), "noise"),
    (Step(eta=0.5), "eta"), (Step(noise="renoise", eta=1.5), "eta"), (Step(noise="bogus"), "noise"),
    (Step(noise="ancestral", boundary=0.1), "boundary"), (Step(s_noise=1.1), "s_noise"),
    (Step(churn=-1.0), "churn"), (Step(noise="renoise", down=5.0), "down"),
    (Step(noise="sde", order=2, ratios=(0.5,)), "ratios")])
def test_bad_stochastic_fields_name_the_field(step, field):
    steps = (Step(order=1), step, Step(order=1)) if step.order == 1 else (Step(), Step(), step, Step())
    sig = [80.0, 1.0, 0.1, 0.0] if len(steps) == 3 else [80.0, 1.0, 0.5, 0.1, 0.0]
    with pytest.raises(PlanError, match=f"field '{field}'"):
        Plan(torch.tensor(sig), steps)


def test_names_keep_stochastic_apart():
    from fewstep.cli import plans as P

    assert "euler_ancestral" not in fs.plans.names() and sorted(P.STOCHASTIC) == fs.plans.names(stochastic=True)
    with pytest.raises(PlanError, match="corrector"):
        Plan(torch.tensor([80.0, 1.0, 0.0]), (Step(noise="ancestral", corrector="unic"), Step()))
