"""The latents BoundaryDiffusion edits: x_t at the mixing step sigma_m, reached by inversion (real images) or by
sampling (generation), the one-step move across a hyperplane, and the regeneration from sigma_m to x0.

Zhu et al. 2023 (BoundaryDiffusion), Sec. 3.1-3.3: DDIM inversion to t_m, z' = z + (d - f(z)) n with f the signed
distance to the boundary and n its unit normal, then denoising from t_m (eta = 1 in the official code). Here every
leg is a fewstep plan run by the one engine: the edit plan is a sampling plan over [sigma_min, sigma_m]; its
inverse (`Plan.inverted`, DDIM inversion for "ddim", higher-order for the others) takes x0 up to sigma_m and the plan
itself brings x_t back (with eta > 0 its steps are ancestral: DDIM's eta, Song et al. 2021 Eq. 16, in VE form).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ...solvers import constructors
from ...solvers.engine import invert, sample
from ...solvers.plan import Plan


def edit_plan(den: Any, sigma: float, nfe: int = 5, name: str = "dpm_solver_pp_2m", sigma_min: float = 0.05,
              grid: str = "logsnr", eta: float = 0.0) -> Plan:
    """The regeneration plan from the mixing step sigma down to 0 (`nfe` evaluations); eta > 0 makes every step
    ancestral with DDIM's eta (Song et al. 2021 Eq. 16). Its deterministic version, inverted, is the inversion."""
    lo = max(float(sigma_min), float(den.sigma_min))
    if not lo < sigma <= den.sigma_max * (1 + 1e-9):
        raise ValueError(f"the mixing sigma {sigma} must lie in ({lo}, {den.sigma_max}] (the edit plan's range)")
    plan = constructors.get(name, nfe=nfe, sigma_min=lo, sigma_max=float(sigma), grid=grid)
    if eta:
        steps = tuple(replace(st, noise="ancestral", eta=float(eta)) for st in plan.steps)
        plan = Plan(plan.sigmas, steps, name=f"{plan.name}:eta{eta:g}", order=1)
    return plan


def sampling_plan(den: Any, sigma: float, nfe: int = 5, name: str = "dpm_solver_pp_2m",
                  grid: str = "logsnr") -> Plan:
    """Generation mode: a plan from sigma_max that stops at the mixing step sigma (a positive last sigma: the
    engine returns x_sigma, not x0); `nfe` evaluations."""
    full = constructors.get(name, nfe=nfe + 1, sigma_min=float(sigma), sigma_max=float(den.sigma_max), grid=grid)
    return Plan(full.sigmas[:-1], full.steps[:-1], name=f"{full.name}:to{sigma:g}", order=full.order)


@torch.no_grad()
def invert_to(den: Any, x0: Tensor, plan: Plan, cond: Any = None, batch: int = 512) -> Tensor:
    """x0 -> x_sigma_m along the PF-ODE with the inverse of the deterministic edit plan (DDIM inversion)."""
    det = plan if not plan.stochastic else Plan(plan.sigmas, tuple(replace(st, noise="none", eta=0.0)
                                                                   for st in plan.steps), name=plan.name)
    inv = det.inverted()
    return torch.cat([invert(den, x0[i:i + batch], inv, cond=_rows(cond, i, batch)) for i in range(0, len(x0), batch)])


@torch.no_grad()
def regenerate(den: Any, x_t: Tensor, plan: Plan, cond: Any = None, generator: Any = None) -> Tensor:
    """x_sigma_m -> x0 with the edit plan (stochastic if it was built with eta > 0; then `generator`)."""
    return sample(den, x_t, plan, cond=cond, generator=generator)


def _rows(cond: Any, i: int, batch: int) -> Any:
    return cond[i:i + batch] if torch.is_tensor(cond) and cond.ndim > 0 else cond


def signed_distance(z: Tensor, w: Tensor, b: float) -> Tensor:
    """f(z) = (w . z + b) / ||w||: the true signed distance of each flattened z to the hyperplane w.z + b = 0."""
    w = w.to(z.device, torch.float64).reshape(-1)
    return (z.flatten(1).to(torch.float64) @ w + float(b)) / w.norm()


def move(z: Tensor, w: Tensor, b: float, d: Tensor | float) -> Tensor:
    """The one-step edit z' = z + (d - f(z)) n, n = w / ||w|| (BoundaryDiffusion Eq. 5, with the intercept): z'
    lies at signed distance d from the hyperplane; d may be a float or one value per row."""
    n = (w.to(z.device, torch.float64).reshape(-1) / w.to(torch.float64).norm())
    d = torch.as_tensor(d, dtype=torch.float64, device=z.device).reshape(-1)
    step = (d - signed_distance(z, w, b))[:, None] * n[None, :]
    return (z.flatten(1).to(torch.float64) + step).reshape(z.shape).to(z.dtype)


def radius_ratio(x_t: Tensor, sigma: float) -> Tensor:
    """||x_t|| / (sigma sqrt(d)) per sample: 1 on the Gaussian annulus of the noise N(0, sigma^2 I) (the
    high-dimensional Gaussian concentrates at radius sigma sqrt(d), relative width 1 / sqrt(2 d))."""
    d = x_t[0].numel()
    return x_t.flatten(1).to(torch.float64).norm(dim=1) / (sigma * math.sqrt(d))
