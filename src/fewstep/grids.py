"""Sigma grids: 1-D float64 tensors from sigma_max down to sigma_min, then a final 0.

`n` is the number of steps; the grid holds n + 1 values and its last step lands on data (sigma = 0).
Karras et al. (2022) Eq. 5 (rho), Lu et al. (2022) Sec. 3.3 (uniform logSNR / time), DPM-Solver's
`time_quadratic`, and diffusers' integer timestep spacing on a discrete VP chain (`vp_discrete`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .denoiser import check_sigma_range
from .noise import NoiseProcess, VPDiscrete, VPLinear


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be a positive integer, got {n!r}")
    check_sigma_range(sigma_min, sigma_max)


def append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _exact_ends(s: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """Pin the endpoints exactly (the exp/log round trip is off in the last bit) and append the final 0."""
    s = s.clone()
    if len(s) > 1:
        s[-1] = sigma_min
    s[0] = sigma_max
    return append_zero(s)


def _ramp(n: int) -> Tensor:
    """n points from 0 to 1 (a single point is 0: one step from sigma_max to 0)."""
    return torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)


def logsnr(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in lambda = -log(sigma) (Lu et al. 2022, DPM-Solver 'logSNR')."""
    _check(n, sigma_min, sigma_max)
    lam = torch.tensor([sigma_max, sigma_min], dtype=torch.float64).log()
    return _exact_ends((lam[0] + _ramp(n) * (lam[1] - lam[0])).exp(), sigma_min, sigma_max)


def karras_at(u: Tensor, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """sigma at positions u in [0, 1] along the rho-ramp from sigma_max (u = 0) to sigma_min (u = 1): Karras Eq. 5
    with u in place of i/(n-1)."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + u * (b - a)) ** rho


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho (Karras Eq. 5)."""
    _check(n, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    return append_zero(karras_at(_ramp(n), sigma_min, sigma_max, rho))


def _time_grid(n: int, sigma_min: float, sigma_max: float, power: float, process: NoiseProcess | None) -> Tensor:
    _check(n, sigma_min, sigma_max)
    p = process or VPLinear()
    t_max, t_min = p.t(sigma_max), p.t(sigma_min)
    ramp = _ramp(n)
    t = (t_max ** (1 / power) + ramp * (t_min ** (1 / power) - t_max ** (1 / power))) ** power
    return _exact_ends(p.sigma(t), sigma_min, sigma_max)


def uniform_t(n: int, sigma_min: float, sigma_max: float, process: NoiseProcess | None = None) -> Tensor:
    """Uniform in the process time t (VP-linear by default; DPM-Solver 'time_uniform')."""
    return _time_grid(n, sigma_min, sigma_max, 1.0, process)


def quadratic_t(n: int, sigma_min: float, sigma_max: float, process: NoiseProcess | None = None) -> Tensor:
    """Uniform in sqrt(t) (DPM-Solver 'time_quadratic'), denser near data."""
    return _time_grid(n, sigma_min, sigma_max, 2.0, process)


def vp_discrete(n: int, sigma_min: float, sigma_max: float, process: VPDiscrete | None = None,
                spacing: str = "linspace") -> Tensor:
    """diffusers' default timestep spacing on a discrete VP chain (Lin et al. 2024, Table 2), then a final 0.

    Integer timesteps t_i (numpy rounding, half to even) between t(sigma_min) and t(sigma_max) of `process`
    (default: `VPDiscrete.spanning(sigma_min, sigma_max)`, the chain running exactly over that range):
    "linspace" = linspace(t_min, t_max, n+1) reversed without t_min, "trailing" = t_max+1 - i (T/n) - 1.
    Like diffusers, the last positive sigma is sigma(t_{n-1}) > sigma_min, not sigma_min itself.
    """
    _check(n, sigma_min, sigma_max)
    p = process or VPDiscrete.spanning(sigma_min, sigma_max)
    t_min, t_max = (round(v) if abs(v - round(v)) < 1e-6 else v for v in (float(p.t(sigma_min)), float(p.t(sigma_max))))
    i = torch.arange(n + 1, dtype=torch.float64)
    if spacing == "linspace":  # numpy.linspace arithmetic: start + i * (delta / n), last pinned
        t = i * ((t_max - t_min) / n) + t_min
        t[-1] = t_max
        t = t.flip(0)[:-1]
    elif spacing == "trailing":  # numpy.arange(T, 0, -T/n), rounded, minus 1
        t = (t_max + 1 - i[:-1] * ((t_max - t_min + 1) / n)).round() - 1 + t_min
    else:
        raise ValueError(f"unknown spacing {spacing!r}; use 'linspace' or 'trailing' (diffusers' 'leading' does not "
                         "start at sigma_max)")
    t = torch.cat([t[:1], t[1:].round()])  # integer timesteps; the first stays at t(sigma_max)
    s = p.sigma(t)
    s[0] = sigma_max
    return append_zero(s)


GRIDS: dict[str, Callable[..., Tensor]] = {
    "logsnr": logsnr, "karras": karras, "uniform_t": uniform_t, "quadratic_t": quadratic_t,
    "vp_discrete": vp_discrete,
}


def get(name: str, n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, **kwargs) -> Tensor:
    """Build a named grid with n steps (n + 1 values ending in 0)."""
    if name not in GRIDS:
        raise KeyError(f"unknown grid {name!r}; known: {', '.join(GRIDS)} (or pass explicit sigmas)")
    return GRIDS[name](n, sigma_min, sigma_max, **kwargs)


def from_values(sigmas: Sequence[float] | Tensor) -> Tensor:
    """Validate user-given sigmas: strictly decreasing, positive, last may be 0 (appended if missing)."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if s.numel() < 1 or not torch.isfinite(s).all():
        raise ValueError("sigmas must be a non-empty list of finite numbers")
    if s[-1] != 0:
        s = append_zero(s)
    if (s[:-1] <= 0).any() or not (s[1:] < s[:-1]).all():
        raise ValueError(f"sigmas must be positive and strictly decreasing before the final 0, got {s.tolist()}")
    return s
