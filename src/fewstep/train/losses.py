"""Denoiser training losses, per sample, on x0 in VE coordinates.

EDM loss: Karras et al. (2022), Eq. 2 and 8 with Table 1: ln(sigma) ~ N(P_mean, P_std^2),
lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.
eps/VP loss: Ho et al. (2020), Eq. 14 / Song et al. (2021): ||eps_hat - eps||^2 with t ~ U(t_min, t_max),
sigma = sigma(t) of a VP process; eps_hat = (x - D(x, sigma)) / sigma, so it is lambda = 1/sigma^2 on D.
Flow matching: Lipman et al. (2023), Eq. 23 / Liu et al. (2023), Eq. 1: ||v(z_t, t) - (n - x0)||^2 on
z_t = (1-t) x0 + t n, t ~ U(0, 1); with D = z_t - t v (precond.flow) it is lambda = 1/t^2 on D, sigma = t/(1-t).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..denoiser import append_dims
from ..flow.coupling import couple
from ..noise import NoiseProcess, VPLinear
from ..precond import edm_loss_weight

Loss = Callable[..., Tensor]


def _mean_over_sample(err: Tensor) -> Tensor:
    return err.reshape(err.shape[0], -1).mean(dim=1)


def edm_loss(den: Callable[..., Tensor], x0: Tensor, cond: Any = None, generator: torch.Generator | None = None,
             P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5) -> Tensor:
    """lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2 per sample (Karras et al. 2022, Eq. 2, Table 1)."""
    B = x0.shape[0]
    rnd = torch.randn(B, generator=generator, device=x0.device, dtype=torch.float64)
    sigma = (P_mean + P_std * rnd).exp()
    n = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x = x0 + append_dims(sigma, x0.ndim).to(x0.dtype) * n
    D_x = den(x, sigma, cond)
    return edm_loss_weight(sigma, sigma_data).to(x0.dtype) * _mean_over_sample((D_x - x0) ** 2)


def vp_loss(den: Callable[..., Tensor], x0: Tensor, cond: Any = None, generator: torch.Generator | None = None,
            process: NoiseProcess | None = None) -> Tensor:
    """||eps_hat - eps||^2 per sample, t ~ U(t_min, t_max) of a VP process (Ho et al. 2020, Eq. 14)."""
    process = process or VPLinear()
    B = x0.shape[0]
    u = torch.rand(B, generator=generator, device=x0.device, dtype=torch.float64)
    t = process.t_min + (process.t_max - process.t_min) * u
    sigma = process.sigma(t.cpu()).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    s = append_dims(sigma, x0.ndim).to(x0.dtype)
    x = x0 + s * eps
    eps_hat = (x - den(x, sigma, cond)) / s
    return _mean_over_sample((eps_hat - eps) ** 2)


def flow_loss(den: Callable[..., Tensor], x0: Tensor, cond: Any = None, generator: torch.Generator | None = None,
              coupling: str = "independent", t_eps: float = 1e-5) -> Tensor:
    """||v - (n - x0)||^2 per sample on z_t = (1-t) x0 + t n, t ~ U(t_eps, 1 - t_eps) (Lipman et al. 2023, Eq. 23),
    written on D as ||D - x0||^2 / t^2 at sigma = t / (1-t); `coupling` pairs x0 with n (independent or minibatch
    OT, Tong et al. 2024)."""
    B = x0.shape[0]
    t = torch.rand(B, generator=generator, device=x0.device, dtype=torch.float64).clamp(t_eps, 1 - t_eps)
    n = couple(x0, torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype), coupling)
    sigma = t / (1 - t)
    x = x0 + append_dims(sigma, x0.ndim).to(x0.dtype) * n
    D_x = den(x, sigma, cond)
    return (1 / t**2).to(x0.dtype) * _mean_over_sample((D_x - x0) ** 2)


LOSSES: dict[str, Loss] = {"edm": edm_loss, "vp": vp_loss, "flow": flow_loss}


def get(name: str) -> Loss:
    """Look up a loss by name (edm, vp, flow)."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
