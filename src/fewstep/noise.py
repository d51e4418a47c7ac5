"""Noise processes and their conversions to VE sigma: x_native = alpha(t) (x0 + sigma(t) n).

Every process maps its native time t to sigma = sigma_t / alpha_t (VE), so solvers only ever see sigma.
VP discrete follows DDPM (Ho et al. 2020) as diffusers stores it; VP linear/cosine follow Song et al. (2021)
and Nichol & Dhariwal (2021); rectified flow follows Liu et al. (2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def _f64(x: Tensor | float) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


class NoiseProcess:
    """Base: subclasses give sigma(t) and t(sigma); alpha(sigma) = 1/sqrt(1+sigma^2) for VP-type processes."""

    t_min: float
    t_max: float

    def sigma(self, t: Tensor | float) -> Tensor:
        raise NotImplementedError

    def t(self, sigma: Tensor | float) -> Tensor:
        raise NotImplementedError

    def alpha(self, sigma: Tensor | float) -> Tensor:
        """Scale that takes VE coordinates to native ones: x_native = alpha * x_ve."""
        s = _f64(sigma)
        return 1 / (1 + s**2).sqrt()

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(self.t_min))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(self.t_max))


class VPDiscrete(NoiseProcess):
    """DDPM's discrete VP chain from alphas_cumprod; t is the (continuous) training index in [0, T-1]."""

    def __init__(self, alphas_cumprod: Tensor) -> None:
        acp = _f64(alphas_cumprod)
        if acp.ndim != 1 or acp.numel() < 2 or not ((acp > 0) & (acp < 1)).all():
            raise ValueError("alphas_cumprod must be a 1-D tensor of values strictly inside (0, 1)")
        self.alphas_cumprod = acp
        self.sigmas = ((1 - acp) / acp).sqrt()
        if not (self.sigmas[1:] > self.sigmas[:-1]).all():
            raise ValueError("alphas_cumprod must be strictly decreasing (sigmas strictly increasing)")
        self.log_sigmas = self.sigmas.log()
        self.t_min, self.t_max = 0.0, float(acp.numel() - 1)

    @classmethod
    def from_betas(
        cls, beta_start: float = 1e-4, beta_end: float = 0.02, num_train_timesteps: int = 1000,
        schedule: str = "linear",
    ) -> VPDiscrete:
        """Build from a beta schedule named as in diffusers: linear, scaled_linear, squaredcos_cap_v2."""
        n = num_train_timesteps
        if schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
        elif schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64) ** 2
        elif schedule == "squaredcos_cap_v2":
            f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
            betas = _f64([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)])
        else:
            raise KeyError(f"unknown beta schedule {schedule!r}; known: linear, scaled_linear, squaredcos_cap_v2")
        return cls(torch.cumprod(1 - betas, 0))

    @classmethod
    def spanning(cls, sigma_min: float, sigma_max: float, num_train_timesteps: int = 1000) -> VPDiscrete:
        """Linear betas (DDPM's shape) whose chain runs exactly from sigma_min at t=0 to sigma_max at t=T-1.

        beta_0 = sigma_min^2 / (1 + sigma_min^2); beta_end by bisection on prod(1 - beta_i) = 1 / (1 + sigma_max^2).
        Gives a diffusers scheduler (trained_betas) the very sigma range of an EDM-style problem.
        """
        if not 0 < sigma_min < sigma_max or num_train_timesteps < 2:
            raise ValueError(f"need 0 < sigma_min < sigma_max and >= 2 timesteps, got {sigma_min}, {sigma_max}, "
                             f"{num_train_timesteps}")
        b0, target = sigma_min**2 / (1 + sigma_min**2), -math.log1p(sigma_max**2)
        ramp = torch.linspace(0, 1, num_train_timesteps, dtype=torch.float64)
        log_end = lambda b1: float(torch.log1p(-(b0 + (b1 - b0) * ramp)).sum())  # noqa: E731
        lo, hi = b0, 1.0 - 1e-12
        if log_end(hi) > target:
            raise ValueError(f"sigma_max={sigma_max} is out of reach of {num_train_timesteps} linear betas from "
                             f"sigma_min={sigma_min}; use more timesteps")
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if log_end(mid) > target else (lo, mid)
        return cls(torch.cumprod(1 - (b0 + (lo - b0) * ramp), 0))

    @property
    def betas(self) -> Tensor:
        """beta_t = 1 - acp_t / acp_{t-1} (beta_0 = 1 - acp_0), float64: diffusers' `trained_betas`."""
        acp = self.alphas_cumprod
        return 1 - acp / torch.cat([acp.new_ones(1), acp[:-1]])

    def sigma(self, t: Tensor | float) -> Tensor:
        """Log-linear interpolation of sigma between integer indices (k-diffusion's DiscreteSchedule)."""
        t = _f64(t).clamp(self.t_min, self.t_max)
        ls = self.log_sigmas.to(t.device)
        lo = t.floor().long().clamp(max=len(ls) - 2)
        w = t - lo
        return ((1 - w) * ls[lo] + w * ls[lo + 1]).exp()

    def t(self, sigma: Tensor | float) -> Tensor:
        """Inverse of sigma(t): the continuous index whose interpolated sigma equals `sigma`."""
        sigma = _f64(sigma)
        ls = self.log_sigmas.to(sigma.device)
        log_s = sigma.log().clamp(ls[0], ls[-1])
        hi = torch.searchsorted(ls, log_s.contiguous()).clamp(1, len(ls) - 1)
        lo = hi - 1
        w = (log_s - ls[lo]) / (ls[hi] - ls[lo])
        return lo.to(torch.float64) + w


@dataclass(frozen=True)
class VPLinear(NoiseProcess):
    """Continuous VP-SDE with linear beta(t) on t in [t_min, 1] (Song et al. 2021, Eq. 33)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def _log_alpha(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sigma(self, t: Tensor | float) -> Tensor:
        return torch.expm1(-2 * self._log_alpha(_f64(t))).sqrt()

    def t(self, sigma: Tensor | float) -> Tensor:
        """Solve -2 log alpha(t) = log(1 + sigma^2) for t (quadratic formula)."""
        c = torch.log1p(_f64(sigma) ** 2)  # = 0.5 (b1-b0) t^2 + b0 t
        a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
        return (-b + (b * b + 4 * a * c).sqrt()) / (2 * a)


@dataclass(frozen=True)
class VPCosine(NoiseProcess):
    """Continuous cosine VP schedule alpha_bar(t) = cos^2(pi/2 (t+s)/(1+s)) (Nichol & Dhariwal 2021, Eq. 17)."""

    s: float = 0.008
    t_min: float = 1e-3
    t_max: float = 0.9946

    def _u(self, t: Tensor | float) -> Tensor:
        return (_f64(t) + self.s) / (1 + self.s) * math.pi / 2

    def sigma(self, t: Tensor | float) -> Tensor:
        """sigma^2 = (1 - alpha_bar) / alpha_bar with alpha_bar(t) = cos^2(u(t)) / cos^2(u(0))."""
        return ((self._u(0.0).cos() / self._u(t).cos()) ** 2 - 1).clamp_min(0).sqrt()

    def t(self, sigma: Tensor | float) -> Tensor:
        u = torch.acos(self._u(0.0).cos() / (1 + _f64(sigma) ** 2).sqrt())
        return u * 2 / math.pi * (1 + self.s) - self.s


@dataclass(frozen=True)
class VE(NoiseProcess):
    """Variance-exploding: t = sigma, alpha = 1 (Song et al. 2021; also EDM's time convention)."""

    t_min: float = 0.002
    t_max: float = 80.0

    def sigma(self, t: Tensor | float) -> Tensor:
        return _f64(t)

    def t(self, sigma: Tensor | float) -> Tensor:
        return _f64(sigma)

    def alpha(self, sigma: Tensor | float) -> Tensor:
        return torch.ones_like(_f64(sigma))


EDM = VE  # EDM uses sigma(t) = t, s(t) = 1 (Karras et al. 2022, Table 1)


@dataclass(frozen=True)
class RectifiedFlow(NoiseProcess):
    """x_t = (1 - t) x0 + t n; sigma = t / (1 - t), alpha = 1 - t (Liu et al. 2023; Esser et al. 2024)."""

    t_min: float = 1e-3
    t_max: float = 0.999

    def sigma(self, t: Tensor | float) -> Tensor:
        t = _f64(t)
        return t / (1 - t)

    def t(self, sigma: Tensor | float) -> Tensor:
        s = _f64(sigma)
        return s / (1 + s)

    def alpha(self, sigma: Tensor | float) -> Tensor:
        return 1 / (1 + _f64(sigma))


PROCESSES = {"vp_linear": VPLinear, "vp_cosine": VPCosine, "ve": VE, "edm": VE, "flow": RectifiedFlow}


def get(name: str, **kwargs) -> NoiseProcess:
    """Look up a continuous process by name; VP discrete is built with `VPDiscrete.from_betas`."""
    if name == "vp_discrete":
        return VPDiscrete.from_betas(**kwargs)
    if name not in PROCESSES:
        raise KeyError(f"unknown noise process {name!r}; known: vp_discrete, {', '.join(sorted(PROCESSES))}")
    return PROCESSES[name](**kwargs)
