"""Discretisation schedules of consistency training: the sigma grid, N(k), mu(k) and iCT's noise sampling.

Song et al. (2023), "Consistency Models", Sec. 3-5 and App. C (Karras grid, N(k)/mu(k) of CT, `create_ema_and_scales_fn`
in openai/consistency_models); Song & Dhariwal (2024), "Improved Techniques for Training Consistency Models" (iCT),
Sec. 3.3-3.5 (exponential curriculum, lognormal noise, 1/(sigma_{i+1}-sigma_i) weighting).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..grids import karras


def cm_grid(N: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """The N-point Karras grid in ascending order: sigma_1 = sigma_min < ... < sigma_N = sigma_max (CM Sec. 5)."""
    if N < 2:
        raise ValueError(f"a consistency grid needs N >= 2 points, got {N}")
    return karras(N, sigma_min, sigma_max, rho)[:-1].flip(0)


def ct_scales(k: int, K: int, s0: int = 2, s1: int = 150) -> int:
    """Original CT curriculum N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 (CM App. C, as coded)."""
    scales = math.ceil(math.sqrt(k / max(K, 1) * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1)
    return max(scales, 1) + 1


def ct_mu(N: int, s0: int = 2, mu0: float = 0.9) -> float:
    """Target EMA rate of original CT, mu(k) = exp(s0 ln(mu0) / (N(k) - 1)) (CM App. C; the code's N - 1)."""
    return math.exp(s0 * math.log(mu0) / max(N - 1, 1))


def ict_scales(k: int, K: int, s0: int = 10, s1: int = 1280) -> int:
    """iCT exponential curriculum N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1))."""
    K_prime = max(math.floor(K / (math.log2(math.floor(s1 / s0)) + 1)), 1)
    return min(s0 * 2 ** (k // K_prime), s1) + 1


def ict_index_probs(sigmas: Tensor, P_mean: float = -1.1, P_std: float = 2.0) -> Tensor:
    """p(i) ∝ erf((ln sigma_{i+1} - P_mean) / (sqrt2 P_std)) - erf((ln sigma_i - P_mean) / (sqrt2 P_std)),
    i = 1..N-1: lognormal noise discretised on the grid (iCT Sec. 3.5)."""
    e = torch.erf((sigmas.to(torch.float64).log() - P_mean) / (math.sqrt(2) * P_std))
    p = (e[1:] - e[:-1]).clamp_min(0)
    return p / p.sum()


def sample_indices(N: int, batch: int, generator: torch.Generator | None, device: torch.device | str,
                   probs: Tensor | None = None) -> Tensor:
    """Indices n in [0, N-2] of the pair (sigma_n, sigma_{n+1}): uniform (CM Alg. 2-3) or from `probs` (iCT)."""
    if probs is None:
        return torch.randint(0, N - 1, (batch,), generator=generator, device=device)
    return torch.multinomial(probs.to(device), batch, replacement=True, generator=generator)


def weighting(name: str, sigma_hi: Tensor, sigma_lo: Tensor | None = None, sigma_data: float = 0.5) -> Tensor:
    """lambda of the CM code's `get_weightings` (uniform, snr, snr+1, karras, truncated-snr) at the student's
    sigma_{n+1} = sigma_hi, or iCT's 1 / (sigma_{n+1} - sigma_n) ('ict')."""
    snr = sigma_hi.to(torch.float64) ** -2
    if name == "uniform":
        return torch.ones_like(snr)
    if name == "snr":
        return snr
    if name == "snr+1":
        return snr + 1
    if name == "karras":
        return snr + 1 / sigma_data**2
    if name == "truncated-snr":
        return snr.clamp_min(1.0)
    if name == "ict":
        if sigma_lo is None:
            raise ValueError("the 'ict' weighting needs both sigma_{n+1} and sigma_n")
        return 1 / (sigma_hi.to(torch.float64) - sigma_lo.to(torch.float64))
    raise KeyError(f"unknown weighting {name!r}; known: {', '.join(WEIGHTINGS)}")


WEIGHTINGS = ("uniform", "snr", "snr+1", "karras", "truncated-snr", "ict")
