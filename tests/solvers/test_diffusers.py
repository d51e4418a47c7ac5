"""Each plan constructor equals the diffusers scheduler driven on the same grid and denoiser (float64).

The analytic denoiser D is wrapped as a VP discrete model with prediction_type="sample" by the one shared
driver, `fewstep.bench.anchors.drive` (also used by `fewstep bench solvers` and `bench search`): at grid point k
the model sees x_VP = alpha x_VE and returns D(x_VE, sigma_k). The grid is whatever diffusers' set_timesteps
builds (read back by `anchors.grid`, cast to float64 so its coefficient maths is float64 too) and is handed to
fewstep as explicit `sigmas`. Configs that match (defaults unless stated):
  ddim             DDIMScheduler (leading spacing, set_alpha_to_one)
  euler            EulerDiscreteScheduler(prediction_type="sample")  [step() upcasts to float32: tol 1e-5]
  heun             HeunDiscreteScheduler(prediction_type="sample"), nfe = 2N-1
  dpm_solver_pp_2m DPMSolverMultistepScheduler(solver_order=2), _3m with solver_order=3
  dpm_solver_pp_2s/3s DPMSolverSinglestepScheduler(solver_order=2/3, lower_order_final=True)
  dpm_solver_2s/3s the same with algorithm_type="dpmsolver", final_sigmas_type="sigma_min"
  unipc_bh1/bh2    UniPCMultistepScheduler(solver_type="bh1"/"bh2", solver_order=2 or 3)
  deis_3           DEISMultistepScheduler(solver_order=3) (its grid ends at sigma(t=0) > 0)
"""

from __future__ import annotations

import pytest
import torch

import fewstep as fs
from fewstep.bench import anchors

diffusers = pytest.importorskip("diffusers")

N_STEPS = [3, 5, 8]


@pytest.fixture(scope="module")
def den():
    return fs.analytic.toy_mixture(dim=3, k=4, std=0.3, sigma_min=0.001, sigma_max=200.0)


def _noise(n=16, dim=3):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def drive(sched, den, n_steps: int, vp: bool = True):
    """The shared driver (fewstep.bench.anchors.drive) from this file's noise; returns (x0 in VE, grid)."""
    return anchors.drive(sched, den, _noise(), n_steps, vp=vp)


def _unique(sig):
    out = [sig[0]]
    for v in sig[1:]:
        if v != out[-1]:
            out.append(v)
    return out


def _check(ours, theirs, tol=1e-6):
    """Relative max difference; diffusers rounds the sample to float32 in some step()s (~6e-8 per step)."""
    rel = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert rel <= tol, rel


CASES = {
    "ddim": (lambda: diffusers.DDIMScheduler(prediction_type="sample", clip_sample=False), {}),
    "dpm_solver_pp_2m": (lambda: diffusers.DPMSolverMultistepScheduler(prediction_type="sample"), {}),
    "dpm_solver_pp_3m": (lambda: diffusers.DPMSolverMultistepScheduler(prediction_type="sample", solver_order=3),
                         {}),
    "dpm_solver_pp_2s": (lambda: diffusers.DPMSolverSinglestepScheduler(
        prediction_type="sample", solver_order=2, lower_order_final=True), {}),
    "dpm_solver_pp_3s": (lambda: diffusers.DPMSolverSinglestepScheduler(
        prediction_type="sample", solver_order=3, lower_order_final=True), {}),
    "dpm_solver_2s": (lambda: diffusers.DPMSolverSinglestepScheduler(
        prediction_type="sample", solver_order=2, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), {}),
    "dpm_solver_3s": (lambda: diffusers.DPMSolverSinglestepScheduler(
        prediction_type="sample", solver_order=3, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), {}),
    # bh1 with final_sigmas_type="zero" returns NaN in diffusers (B(h) = -h = -inf times a zero residual)
    "unipc_bh1": (lambda: diffusers.UniPCMultistepScheduler(prediction_type="sample", solver_type="bh1",
                                                            final_sigmas_type="sigma_min"), {}),
    "unipc_bh2": (lambda: diffusers.UniPCMultistepScheduler(prediction_type="sample", solver_type="bh2"), {}),
    "unipc_bh2_o3": (lambda: diffusers.UniPCMultistepScheduler(prediction_type="sample", solver_type="bh2",
                                                               solver_order=3), {"order": 3}),
    "unipc_bh1_noise": (lambda: diffusers.UniPCMultistepScheduler(prediction_type="sample", solver_type="bh1",
                                                                  predict_x0=False, final_sigmas_type="sigma_min"),
                        {"prediction": "noise"}),
    "deis_3": (lambda: diffusers.DEISMultistepScheduler(prediction_type="sample", solver_order=3), {}),
}


@pytest.mark.parametrize("n", N_STEPS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_vp_schedulers_match(den, case, n):
    make, opts = CASES[case]
    name = case.removesuffix("_o3").removesuffix("_noise")
    sched = make()
    theirs, sig = drive(sched, den, n)
    if "singlestep" in type(sched).__name__.lower():  # diffusers may reset lower_order_final itself
        opts = {**opts, "lower_order_final": sched.config.lower_order_final}
    plan = fs.plans.get(name, nfe=len(sig) - 1, sigmas=sig, **opts)
    ours = fs.sample(den, _noise() * sig[0], plan)
    _check(ours, theirs, tol=5e-7 * n)  # DPMSolverMultistep.step() rounds the sample to float32


@pytest.mark.parametrize("n", N_STEPS)
def test_euler_matches(den, n):
    theirs, sig = drive(diffusers.EulerDiscreteScheduler(prediction_type="sample"), den, n, vp=False)
    ours = fs.sample(den, _noise() * sig[0], fs.plans.get("euler", nfe=n, sigmas=sig))
    _check(ours, theirs, tol=1e-5)  # diffusers' Euler step() computes in float32


@pytest.mark.parametrize("n", N_STEPS)
def test_heun_matches(den, n):
    theirs, sig = drive(diffusers.HeunDiscreteScheduler(prediction_type="sample"), den, n, vp=False)
    grid = _unique(sig)
    ours = fs.sample(den, _noise() * grid[0], fs.plans.get("heun", nfe=2 * n - 1, sigmas=grid))
    _check(ours, theirs)


LIKE_FOR_LIKE = {  # diffusers label (fewstep.bench.anchors.variants) -> the fewstep plan on the same problem
    "DPM++2M": ("dpm_solver_pp_2m", {"grid": "vp_discrete"}),
    "DPM++2M+karras": ("dpm_solver_pp_2m", {"grid": "karras"}),
    "DPM++3M+lu": ("dpm_solver_pp_3m", {"grid": "logsnr"}),
    "UniPC-bh2+trailing": ("unipc_bh2", {"grid": "vp_discrete", "spacing": "trailing"}),
    "DEIS-3": ("deis_3", {"grid": "vp_discrete", "final_sigma": 0.01}),  # DEIS ends at sigma(t=0), not on data
    "UniPC-bh1+smin": ("unipc_bh1", {"grid": "vp_discrete", "final_sigma": 0.01}),
}


@pytest.mark.parametrize("n", [3, 6])
@pytest.mark.parametrize("label", sorted(LIKE_FOR_LIKE))
def test_like_for_like_problem(den, label, n):
    """On the benchmark's problem (x_T at sigma_max, table spanning [sigma_min, sigma_max]) diffusers starts at x_T
    and equals the fewstep plan built from fewstep's own named grid (no sigmas copied from diffusers)."""
    smin, smax = 0.01, 80.0
    x_T = _noise() * smax
    theirs = anchors.solve(label, den, x_T, n, sigma_max=smax, sigma_min=smin)
    name, opts = LIKE_FOR_LIKE[label]
    ours = fs.sample(den, x_T, fs.plans.get(name, nfe=n, sigma_min=smin, sigma_max=smax, **opts))
    _check(ours, theirs, tol=1e-6)
