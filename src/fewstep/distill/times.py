"""Choosing a consistency model's sampling times: a ternary search of the intermediate sigmas of Algorithm 1.

Song et al. (2023), "Consistency Models", Sec. 6 (the two-step times were found by ternary search on FID;
openai/consistency_models `scripts/ternary_search.py`). The sampler itself is fewstep.solvers.renoise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..solvers.renoise import geometric_sigmas


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
    inner = geometric_sigmas(n_steps, sigma_min, sigma_max)[1:]
    best = math.inf
    for _ in range(sweeps):
        for j in range(len(inner)):
            hi = sigma_max if j == 0 else inner[j - 1]
            lo = sigma_min if j == len(inner) - 1 else inner[j + 1]

            def one(v: float, j: int = j) -> float:
                return score([sigma_max, *inner[:j], v, *inner[j + 1:]])

            inner[j], best = ternary_search(one, lo * 1.0001, hi * 0.9999, iters)
    return [sigma_max, *inner], best
