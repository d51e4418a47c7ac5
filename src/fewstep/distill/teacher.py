"""One PF-ODE step of the teacher from sigma_{n+1} to sigma_n with a per-sample sigma (CD's Phi, CM Alg. 2).

The solver engine (fewstep.solvers) runs plans whose sigma grid is shared by the whole batch; consistency
distillation needs a different pair (sigma_{n+1}, sigma_n) for each sample, so this module holds the minimal
per-sample single-step versions of the engine's first steps (tests check equality with the engine on a scalar
sigma). VE coordinates, dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 3 with s=1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..denoiser import append_dims

StepFn = Callable[..., Tensor]


def euler_step(den: Any, x: Tensor, s: Tensor, t: Tensor, cond: Any = None) -> Tensor:
    """Euler = DDIM in VE coordinates: x_t = D + (t/s)(x - D) (Song et al. 2021; CM code `euler_solver`)."""
    D = den(x, s, cond)
    r = append_dims(t / s, x.ndim).to(x.dtype)
    return D + r * (x - D)


def heun_step(den: Any, x: Tensor, s: Tensor, t: Tensor, cond: Any = None) -> Tensor:
    """Heun's 2nd-order step (Karras et al. 2022, Alg. 1; CM code `heun_solver`); t must be > 0."""
    h = append_dims(t - s, x.ndim).to(x.dtype)
    d = (x - den(x, s, cond)) / append_dims(s, x.ndim).to(x.dtype)
    x1 = x + h * d
    d1 = (x1 - den(x1, t, cond)) / append_dims(t, x.ndim).to(x.dtype)
    return x + h * (d + d1) / 2


def dpm_solver_2s_step(den: Any, x: Tensor, s: Tensor, t: Tensor, cond: Any = None) -> Tensor:
    """DPM-Solver++(2S) with r1 = 1/2 (Lu et al. 2022b, Alg. 1), VE form x_t = (t/s) x + (1 - t/s) D(u, s_mid),
    u = (s_mid/s) x + (1 - s_mid/s) D(x, s), s_mid = sqrt(s t) (the midpoint in lambda = -ln sigma)."""
    s_mid = (s * t).sqrt()
    r_mid = append_dims(s_mid / s, x.ndim).to(x.dtype)
    u = r_mid * x + (1 - r_mid) * den(x, s, cond)
    r = append_dims(t / s, x.ndim).to(x.dtype)
    return r * x + (1 - r) * den(u, s_mid, cond)


STEPS: dict[str, StepFn] = {"euler": euler_step, "ddim": euler_step, "heun": heun_step,
                            "dpm_solver_2s": dpm_solver_2s_step}


def teacher_step(den: Any, x: Tensor, sigma_from: Tensor, sigma_to: Tensor, solver: str = "heun",
                 cond: Any = None) -> Tensor:
    """Phi(x, sigma_from -> sigma_to; teacher) with per-sample sigmas [B] (CM Alg. 2, line 'x_hat_{t_n}')."""
    if solver not in STEPS:
        raise KeyError(f"unknown teacher solver {solver!r}; known: {', '.join(STEPS)}")
    with torch.no_grad():
        return STEPS[solver](den, x, sigma_from.to(torch.float64), sigma_to.to(torch.float64), cond)
