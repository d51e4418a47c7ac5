"""Preconditioning as data: c_skip, c_out, c_in, c_noise per parameterisation, and one wrapper.

D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))  -- Karras et al. (2022), Eq. 7
and Table 1; the consistency boundary form is Song et al. (2023), "Consistency Models", Eq. (after Eq. 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .denoiser import append_dims, batch_sigma, check_sigma_range

SigmaFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Precond:
    """Four functions of sigma [batch] (float64) plus the name and arguments that rebuild it."""

    c_skip: SigmaFn
    c_out: SigmaFn
    c_in: SigmaFn
    c_noise: SigmaFn
    name: str = "custom"
    kwargs: dict[str, Any] = field(default_factory=dict)


def _log_sigma_over_4(sigma: Tensor) -> Tensor:
    return sigma.log() / 4


def edm(sigma_data: float = 0.5) -> Precond:
    """EDM preconditioning (Karras et al. 2022, Table 1)."""
    sd2 = sigma_data**2
    return Precond(
        c_skip=lambda s: sd2 / (s**2 + sd2),
        c_out=lambda s: s * sigma_data / (s**2 + sd2).sqrt(),
        c_in=lambda s: 1 / (s**2 + sd2).sqrt(),
        c_noise=_log_sigma_over_4,
        name="edm",
        kwargs={"sigma_data": sigma_data},
    )


def eps(c_noise: SigmaFn = _log_sigma_over_4) -> Precond:
    """Noise prediction, VP input scaling: D = x - sigma * eps(x / sqrt(1 + sigma^2)) (Table 1, 'VP')."""
    return Precond(
        c_skip=lambda s: torch.ones_like(s),
        c_out=lambda s: -s,
        c_in=lambda s: 1 / (s**2 + 1).sqrt(),
        c_noise=c_noise,
        name="eps",
    )


def v(c_noise: SigmaFn = _log_sigma_over_4) -> Precond:
    """v-prediction (Salimans & Ho 2022): x0 = alpha x_vp - sigma_vp v, written in VE coordinates."""
    return Precond(
        c_skip=lambda s: 1 / (s**2 + 1),
        c_out=lambda s: -s / (s**2 + 1).sqrt(),
        c_in=lambda s: 1 / (s**2 + 1).sqrt(),
        c_noise=c_noise,
        name="v",
    )


def x0(c_noise: SigmaFn = _log_sigma_over_4) -> Precond:
    """Direct data prediction ('sample' in diffusers) with VP input scaling."""
    return Precond(
        c_skip=lambda s: torch.zeros_like(s),
        c_out=lambda s: torch.ones_like(s),
        c_in=lambda s: 1 / (s**2 + 1).sqrt(),
        c_noise=c_noise,
        name="x0",
    )


def flow(c_noise: SigmaFn | None = None, time_scale: float = 1.0) -> Precond:
    """Rectified-flow velocity v = n - x0 on x_t = (1-t) x0 + t n, t = sigma / (1 + sigma) (Liu et al. 2023);
    the network sees c_noise = time_scale * t (diffusers' flow models: 1000 t) unless c_noise is given."""
    fn = c_noise if c_noise is not None else (lambda s: time_scale * s / (1 + s))
    return Precond(
        c_skip=lambda s: 1 / (1 + s),
        c_out=lambda s: -s / (1 + s),
        c_in=lambda s: 1 / (1 + s),
        c_noise=fn,
        name="flow",
        kwargs={} if c_noise is not None else {"time_scale": time_scale},
    )


def consistency(sigma_min: float = 0.002, sigma_data: float = 0.5) -> Precond:
    """Consistency-model boundary parameterisation: c_skip(sigma_min) = 1, c_out(sigma_min) = 0 exactly."""
    sd2 = sigma_data**2
    return Precond(
        c_skip=lambda s: sd2 / ((s - sigma_min) ** 2 + sd2),
        c_out=lambda s: (s - sigma_min) * sigma_data / (s**2 + sd2).sqrt(),
        c_in=lambda s: 1 / (s**2 + sd2).sqrt(),
        c_noise=_log_sigma_over_4,
        name="consistency",
        kwargs={"sigma_min": sigma_min, "sigma_data": sigma_data},
    )


PRECONDS: dict[str, Callable[..., Precond]] = {
    "edm": edm, "eps": eps, "v": v, "x0": x0, "flow": flow, "consistency": consistency,
}


def get(name: str, **kwargs: Any) -> Precond:
    """Look up a preconditioning by name (edm, eps, v, x0, flow, consistency)."""
    if name not in PRECONDS:
        raise KeyError(f"unknown preconditioning {name!r}; known: {', '.join(sorted(PRECONDS))}")
    return PRECONDS[name](**kwargs)


class Preconditioned(nn.Module):
    """Wrap a raw network F(x_in, c_noise, cond) into a denoiser D(x, sigma, cond) (Karras et al. 2022, Eq. 7)."""

    def __init__(
        self,
        net: nn.Module,
        precond: Precond,
        sigma_min: float,
        sigma_max: float,
        shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        check_sigma_range(sigma_min, sigma_max)
        self.net, self.precond = net, precond
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.shape = tuple(shape) if shape is not None else None
        self.config: dict[str, Any] = {}

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = batch_sigma(sigma, x).to(torch.float64)
        p = self.precond
        c_skip, c_out, c_in = (append_dims(f(s), x.ndim) for f in (p.c_skip, p.c_out, p.c_in))
        dtype = next(self.net.parameters()).dtype if any(True for _ in self.net.parameters()) else x.dtype
        # a half-precision net gets x in its dtype and c_noise in float32, as EDM's EDMPrecond does
        half = dtype in (torch.float16, torch.bfloat16)
        F_x = self.net((c_in * x).to(dtype), p.c_noise(s).to(torch.float32 if half else dtype), cond)
        D_x = c_skip * x.to(torch.float64) + c_out * F_x.to(torch.float64)
        return D_x.to(x.dtype)


def raw_target(precond: Precond, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """The network target F* with D = x0 exactly: (x0 - c_skip x) / c_out (EDM Eq. 8, effective target)."""
    s = sigma.to(torch.float64)
    c_skip, c_out = append_dims(precond.c_skip(s), x.ndim), append_dims(precond.c_out(s), x.ndim)
    return ((x0 - c_skip * x) / c_out).to(x.dtype)


def edm_loss_weight(sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """lambda(sigma) c_out(sigma)^2 = 1 for EDM; returns lambda(sigma) (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


