"""High-accuracy probability-flow ODE solution, the ground truth solvers and searches are scored against.

dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 4 with s=1). Integrated in u = log(sigma),
dx/du = x - D(x, e^u), with scipy's adaptive DOP853 in float64. A target sigma of 0 integrates to the
denoiser's sigma_min and applies the last step x0 = D(x, sigma_min), as every plan's final step does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .denoiser import check_denoiser, check_finite


@torch.no_grad()
def reference_solve(
    den: Any, x: Tensor, sigma_from: float, sigma_to: float, cond: Any = None,
    rtol: float = 1e-9, atol: float = 1e-9,
) -> Tensor:
    """Solve the PF-ODE from sigma_from to sigma_to (>= 0) to high accuracy; returns x's dtype and device."""
    from scipy.integrate import solve_ivp

    check_denoiser(den)
    check_finite(x, "x")
    sigma_from, sigma_to = float(sigma_from), float(sigma_to)
    if not sigma_from > 0 or sigma_to < 0 or sigma_to >= sigma_from:
        raise ValueError(f"need sigma_from > sigma_to >= 0, got {sigma_from} -> {sigma_to}")
    s_end = sigma_to if sigma_to > 0 else float(den.sigma_min)
    shape, device, dtype = x.shape, x.device, x.dtype

    def rhs(u: float, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(y).reshape(shape).to(device=device, dtype=torch.float64)
        d = den(xt, math.exp(u), cond).to(torch.float64)
        return (xt - d).reshape(-1).cpu().numpy()

    y = x.detach().to(torch.float64).reshape(-1).cpu().numpy()
    if s_end < sigma_from:
        sol = solve_ivp(rhs, (math.log(sigma_from), math.log(s_end)), y, method="DOP853", rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"reference ODE solve failed: {sol.message}")
        y = sol.y[:, -1]
    out = torch.from_numpy(y).reshape(shape).to(device)
    if sigma_to == 0:
        out = den(out, s_end, cond).to(torch.float64)
    return out.to(dtype)
