"""Velocity models as denoisers and back (Lipman et al. 2023; Liu et al. 2023), and the exact flow ODE.

A path z_t = (1-t) x0 + t n is the VE process x = z_t / (1-t) at sigma = t / (1-t), so a velocity field v(z, t)
is the denoiser D(x, sigma) = z_t - t v(z_t, t) (precond.flow) and any denoiser has the velocity
v = (z_t - D) / t. Every fewstep plan, S^3 and FewStepScheduler therefore run flow models unchanged; `solve` is
the adaptive dopri5 reference LFM reports (Dao et al. 2023, Sec. 5: rtol = atol = 1e-5): scipy's RK45 is the
same Dormand-Prince 5(4) pair, run on the whole batch as one system, as torchdiffeq's odeint does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..denoiser import append_dims, batch_sigma
from ..noise import RectifiedFlow
from ..precond import Preconditioned
from ..precond import flow as flow_precond


def velocity_denoiser(net: nn.Module, t_min: float = 1e-3, t_max: float = 0.999, time_scale: float = 1.0,
                      shape: tuple[int, ...] | None = None) -> Preconditioned:
    """A raw velocity network net(z_t, time_scale * t, cond) -> v as a fewstep denoiser on t in [t_min, t_max]."""
    if not 0 < t_min < t_max < 1:
        raise ValueError(f"need 0 < t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
    path = RectifiedFlow(t_min=t_min, t_max=t_max)
    return Preconditioned(net, flow_precond(time_scale=time_scale), path.sigma_min, path.sigma_max, shape)


def velocity(den: Any, z: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
    """v(z_t, t) = (z_t - D(z_t / (1-t), t / (1-t))) / t of any denoiser (a flow model's own velocity exactly)."""
    tt = batch_sigma(t, z).to(torch.float64)
    if not bool(((tt > 0) & (tt < 1)).all()):
        raise ValueError("t must lie in (0, 1) (t = 1 is pure noise, sigma = inf)")
    sigma = tt / (1 - tt)
    a = append_dims(tt, z.ndim)
    D = den((z.to(torch.float64) / (1 - a)).to(z.dtype), sigma, cond).to(torch.float64)
    return ((z.to(torch.float64) - D) / a).to(z.dtype)


@dataclass
class Solved:
    """The exact-ODE samples x0 (VE = data coordinates) and the denoiser evaluations per sample it took."""

    x: Tensor
    nfe: int


@torch.no_grad()
def solve(den: Any, x_T: Tensor, cond: Any = None, rtol: float = 1e-5, atol: float = 1e-5) -> Solved:
    """Integrate dz/dt = v(z, t) from t(sigma_max) to t(sigma_min) with dopri5 (scipy RK45), from VE noise x_T at
    den.sigma_max, and take the final D at sigma_min, as every fewstep plan's last step does."""
    from scipy.integrate import solve_ivp

    s_max, s_min = float(den.sigma_max), float(den.sigma_min)
    t_hi, t_lo = float(RectifiedFlow().t(s_max)), float(RectifiedFlow().t(s_min))
    shape, dtype, device = x_T.shape, x_T.dtype, x_T.device

    def f(t: float, y: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        return velocity(den, z, t, cond).double().reshape(-1).cpu().numpy()

    z = (x_T.double() / (1 + s_max)).reshape(-1).cpu().numpy()
    sol = solve_ivp(f, (t_hi, t_lo), z, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"the dopri5 reference failed: {sol.message}")
    z0 = torch.from_numpy(sol.y[:, -1]).reshape(shape).to(device=device, dtype=torch.float64)
    x = den((z0 / (1 - t_lo)).to(dtype), s_min, cond)
    return Solved(x, int(sol.nfev) + 1)
