"""The exact consistency function of a Gaussian, an oracle for tests and for the editing operator.

For p(x0) = N(mu, diag(s^2)) the PF-ODE moves x - mu proportionally to sqrt(s^2 + sigma^2), so
f(x, sigma) = mu + sqrt(s^2 + eps^2) / sqrt(s^2 + sigma^2) (x - mu) maps every point of a trajectory to its value
at sigma = eps (Song et al. 2023, Def. of the consistency function, Sec. 3).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..denoiser import append_dims, batch_sigma, check_sigma_range


class GaussianConsistency:
    """f(x, sigma) of N(mean, std^2) (mean, std broadcast against one sample); `perturb` adds a wrong
    sigma-dependent gain (1 + perturb sigma / (1 + sigma)) that keeps f(x, eps) ~ x but breaks self-consistency."""

    def __init__(self, mean: Tensor | float, std: Tensor | float, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 perturb: float = 0.0) -> None:
        check_sigma_range(sigma_min, sigma_max)
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = torch.as_tensor(std, dtype=torch.float64)
        self.sigma_min, self.sigma_max, self.perturb = float(sigma_min), float(sigma_max), float(perturb)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = append_dims(batch_sigma(sigma, x).to(torch.float64), x.ndim)
        eps, v = self.sigma_min, self.std**2
        gain = (v + eps**2).sqrt() / (v + s**2).sqrt() * (1 + self.perturb * (s - eps) / (1 + s))
        return (self.mean + gain * (x.to(torch.float64) - self.mean)).to(x.dtype)
