"""Sampling a consistency model: one step, Algorithm 1 multistep, and a ternary search of the intermediate sigmas.

Song et al. (2023), "Consistency Models", Alg. 1 and Sec. 6 (the two-step times were found by ternary search on
FID; openai/consistency_models `scripts/ternary_search.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..denoiser import check_denoiser


def _clip(x: Tensor, clip: float | None) -> Tensor:
    return x if clip is None else x.clamp(-clip, clip)


def _check_sigmas(cm: Any, sigmas: Sequence[float]) -> list[float]:
    s = [float(v) for v in sigmas]
    if not s:
        raise ValueError("give at least one sigma (the first is sigma_max = T)")
    if any(b >= a for a, b in zip(s, s[1:], strict=False)):
        raise ValueError(f"sigmas must decrease strictly, got {s}")
    if s[-1] < cm.sigma_min or s[0] > cm.sigma_max * (1 + 1e-9):
        raise ValueError(f"sigmas must lie in [sigma_min={cm.sigma_min}, sigma_max={cm.sigma_max}], got {s}")
    return s


@torch.no_grad()
def multistep(cm: Any, x_T: Tensor, sigmas: Sequence[float], noise: Sequence[Tensor] | None = None,
              generator: torch.Generator | None = None, cond: Any = None, clip: float | None = None) -> Tensor:
    """CM Algorithm 1: x <- f(x_T, T); for tau_n: x <- f(x + sqrt(tau_n^2 - eps^2) z, tau_n).
    x_T is already scaled (noise * sigmas[0]); `noise` (one tensor per later step) or `generator` gives z."""
    check_denoiser(cm)
    s = _check_sigmas(cm, sigmas)
    if noise is not None and len(noise) != len(s) - 1:
        raise ValueError(f"need {len(s) - 1} noise tensors for {len(s)} sigmas, got {len(noise)}")
    eps = float(cm.sigma_min)
    x = _clip(cm(x_T, s[0], cond), clip)
    for i, tau in enumerate(s[1:]):
        z = noise[i] if noise is not None else torch.randn(x.shape, generator=generator, device=x.device,
                                                            dtype=x.dtype)
        x = _clip(cm(x + math.sqrt(max(tau**2 - eps**2, 0.0)) * z, tau, cond), clip)
    return x


def onestep(cm: Any, x_T: Tensor, cond: Any = None, clip: float | None = None) -> Tensor:
    """One-step generation x0 = f(x_T, T) with T = cm.sigma_max (CM Sec. 3)."""
    return multistep(cm, x_T, [cm.sigma_max], cond=cond, clip=clip)


def ternary_search(score: Callable[[float], float], lo: float, hi: float, iters: int = 8) -> tuple[float, float]:
    """Minimise a unimodal score over log sigma in [lo, hi] by ternary search (CM `ternary_search.py`).
    Returns (best sigma, its score); 2 * iters + 1 evaluations."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    a, b = math.log(lo), math.log(hi)
    for _ in range(iters):
        m1, m2 = a + (b - a) / 3, b - (b - a) / 3
        if score(math.exp(m1)) <= score(math.exp(m2)):
            b = m2
        else:
            a = m1
    best = math.exp((a + b) / 2)
    return best, score(best)


def search_sigmas(score: Callable[[list[float]], float], n_steps: int, sigma_min: float, sigma_max: float,
                  iters: int = 6, sweeps: int = 1) -> tuple[list[float], float]:
    """Coordinate-wise ternary search of the n_steps - 1 intermediate sigmas of Alg. 1 (first = sigma_max),
    `score(sigmas)` e.g. the FD of the samples. Starts from a geometric spacing."""
    if n_steps < 2:
        return [sigma_max], score([sigma_max])
    inner = [sigma_max * (sigma_min / sigma_max) ** (i / n_steps) for i in range(1, n_steps)]
    best = math.inf
    for _ in range(sweeps):
        for j in range(len(inner)):
            hi = sigma_max if j == 0 else inner[j - 1]
            lo = sigma_min if j == len(inner) - 1 else inner[j + 1]

            def one(v: float, j: int = j) -> float:
                return score([sigma_max, *inner[:j], v, *inner[j + 1:]])

            inner[j], best = ternary_search(one, lo * 1.0001, hi * 0.9999, iters)
    return [sigma_max, *inner], best
