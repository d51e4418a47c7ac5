"""Inversion plans (increasing sigmas) run x0 -> x_T on the one engine: equal to diffusers' inverse scheduler and to
DDIM inversion written out, converging to the exact ODE map at the declared order, and round-tripping x0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fewstep as fs
from fewstep.bench import anchors
from fewstep.errors import PlanError
from fewstep.noise import VPDiscrete
from fewstep.solvers.plan import Plan, Step

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def den():
    return fs.analytic.toy_mixture(dim=3, k=4, std=0.3, sigma_min=0.002, sigma_max=200.0)


def _x0(den, n=16):
    return den.sample(n, torch.Generator().manual_seed(0)).double()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("n", [3, 6, 10])
def test_ascending_plan_equals_diffusers_inverse_multistep(den, order, n):
    """DPMSolverMultistepInverseScheduler (float64 table spanning [0.002, 80]) = the engine on its ascending grid."""
    sched = anchors.make("DPMSolverMultistepInverseScheduler", VPDiscrete.spanning(0.002, 80.0), solver_order=order)
    sched.set_timesteps(n)
    sig = anchors.grid(sched)
    x0 = _x0(den)
    theirs, _ = anchors.drive(sched, den, x0 / sig[0], n)
    orders = [min(order, i + 1, n - i) for i in range(n)]  # warm start; lower_order_final (< 15 steps)
    orders[-1] = 1
    steps = [Step(order=p, relaxation="dpm_solver_2" if p == 2 else "none", second_scale=0.5 if p == 3 else 1.0)
             for p in orders]
    ours = fs.sample(den, x0, Plan(torch.tensor(sig), tuple(steps)))
    assert _rel(ours, theirs) <= 1e-10


def test_ddim_inversion_is_song_eq_12_reversed(den):
    """x_{t} = D(x_s, s) + t (x_s - D(x_s, s)) / s on increasing sigmas (Song et al. 2021, Eq. 12, run upwards)."""
    plan = fs.plans.get("ddim", nfe=8).inverted()
    s = plan.sigmas.tolist()
    x = _x0(den)
    for a, b in zip(s, s[1:], strict=False):
        d = den(x, a)
        x = d + b * (x - d) / a
    assert s == sorted(s) and s[0] == 0.002 and s[-1] == 80.0
    assert _rel(fs.invert(den, _x0(den), fs.plans.get("ddim", nfe=8)), x) <= 1e-12


@pytest.mark.slow  # ~20 s: one exact forward solve per NFE and plan
@pytest.mark.parametrize("name,opts,declared", [("ddim", {}, 1), ("dpm_solver_pp_2m", {}, 2),
                                                ("dpm_solver_pp_3m", {"exact": True}, 3), ("unipc_bh2", {}, 3)])
def test_inversion_converges_at_the_declared_order(name, opts, declared):
    """The exact PF-ODE (fs.reference_solve, DOP853) carries invert(x0) back onto x0 at sigma_min; the error falls
    with NFE at the plan's order."""
    den = fs.analytic.toy_mixture(dim=2, k=4, std=0.5, spread=1.0, sigma_min=0.05, sigma_max=80.0)
    x0 = den.sample(16, torch.Generator().manual_seed(1)).double()
    nfes = [32, 48, 64, 96]
    errs = []
    for k in nfes:
        x_T = fs.invert(den, x0, fs.plans.get(name, nfe=k, sigma_min=0.05, sigma_max=80.0, **opts))
        back = fs.reference_solve(den, x_T, 80.0, 0.05, rtol=1e-11, atol=1e-11)
        errs.append((back - x0).abs().max().item())
    slope = -np.polyfit(np.log(nfes), np.log(errs), 1)[0]
    assert abs(slope - declared) <= 0.5, (errs, slope)


@pytest.mark.parametrize("name", ["ddim", "dpm_solver_pp_2m", "unipc_bh2"])
def test_round_trip_error_falls_with_nfe(den, name):
    x0 = _x0(den)
    err = {}
    for k in (10, 50):
        plan = fs.plans.get(name, nfe=k)
        err[k] = anchors.rms(fs.sample(den, fs.invert(den, x0, plan), plan), x0)
    floor = anchors.rms(den(x0, 0.002), x0)  # the exact ODE round trip ends with x0' = D(x0, sigma_min)
    assert err[50] < err[10] / 5 and err[50] > floor, (err, floor)


def test_inverted_plan_is_data(den):
    plan = fs.plans.get("unipc_bh2", nfe=6, afs="zero")
    inv = plan.inverted()
    assert inv.ascending and not plan.ascending and inv.name == "unipc_bh2:inverted"
    assert inv.sigmas.tolist() == plan.sigmas[plan.sigmas > 0].flip(0).tolist()
    assert inv.nfe == len(inv.steps) == len(plan.steps) - 1 and inv.afs == "none"
    assert inv.steps[:-1] == plan.steps[: len(inv.steps) - 1] and inv.steps[-1].corrector == "none"
    assert Plan.from_json(inv.to_json()) == inv
    assert torch.equal(fs.invert(den, _x0(den), plan), fs.sample(den, _x0(den), inv))
    with pytest.raises(PlanError, match="already"):
        inv.inverted()
    with pytest.raises(PlanError, match="noise"):
        fs.plans.get("euler_ancestral", nfe=4).inverted()
    with pytest.raises(PlanError, match="noise"):
        Plan(torch.tensor([0.1, 1.0, 10.0]), (Step(noise="ancestral"), Step()))
    with pytest.raises(PlanError, match="afs"):
        Plan(torch.tensor([0.1, 1.0]), (Step(),), afs="zero")
    with pytest.raises(PlanError, match="increasing"):
        Plan(torch.tensor([0.1, 1.0, 0.5]), (Step(), Step()))
