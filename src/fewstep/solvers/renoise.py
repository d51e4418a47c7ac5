"""The re-noising multistep sampler of consistency models: x <- f(x_T, T), then for each later tau_n,
x <- f(x + sqrt(tau_n^2 - eps^2) z, tau_n) (Song et al. 2023, "Consistency Models", Alg. 1).

The same loop samples every student that maps a noisy point to x0 in one call and re-noises between calls. It is
a plan the one engine runs (`consistency_plan`: "renoise" steps, solvers/stochastic.py); this module only calls
the model as these students expect (sigma a float, the output clipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..denoiser import check_denoiser
from .engine import run
from .plan import Plan, Step
from .stochastic import Batch, Given, NoiseSource


def _clip(x: Tensor, clip: float | None) -> Tensor:
    return x if clip is None else x.clamp(-clip, clip)


def check_sigmas(cm: Any, sigmas: Sequence[float]) -> list[float]:
    """The sigmas as floats; a ValueError unless they decrease strictly inside [sigma_min, sigma_max]."""
    s = [float(v) for v in sigmas]
    if not s:
        raise ValueError("give at least one sigma (the first is sigma_max = T)")
    if any(b >= a for a, b in zip(s, s[1:], strict=False)):
        raise ValueError(f"sigmas must decrease strictly, got {s}")
    if s[-1] < cm.sigma_min or s[0] > cm.sigma_max * (1 + 1e-9):
        raise ValueError(f"sigmas must lie in [sigma_min={cm.sigma_min}, sigma_max={cm.sigma_max}], got {s}")
    return s


def consistency_plan(sigmas: Sequence[float], eps: float) -> Plan:
    """CM Alg. 1 as a plan: evaluate at each sigma, re-noise the output to the next with sqrt(tau^2 - eps^2) z (the
    output already carries the boundary noise eps), and return the last output: grid sigmas + [0]."""
    s = [float(v) for v in sigmas]
    steps = [Step(noise="renoise", boundary=float(eps)) for _ in s[1:]] + [Step()]
    return Plan(torch.tensor([*s, 0.0], dtype=torch.float64), tuple(steps), name="consistency", order=1)


@torch.no_grad()
def multistep(cm: Any, x_T: Tensor, sigmas: Sequence[float], noise: Sequence[Tensor] | NoiseSource | None = None,
              generator: torch.Generator | None = None, cond: Any = None, clip: float | None = None) -> Tensor:
    """CM Algorithm 1: x <- f(x_T, T); for tau_n: x <- f(x + sqrt(tau_n^2 - eps^2) z, tau_n).
    x_T is already scaled (noise * sigmas[0]); z: `noise` (one tensor per later step, or a noise source such as
    fs.seed.PerSample(seeds): per sample) or else drawn from `generator` (None: torch's global RNG)."""
    check_denoiser(cm)
    s = check_sigmas(cm, sigmas)
    if isinstance(noise, (list, tuple)):
        if len(noise) != len(s) - 1:
            raise ValueError(f"need {len(s) - 1} noise tensors for {len(s)} sigmas, got {len(noise)}")
        noise = Given(noise)
    gen = run(consistency_plan(s, float(cm.sigma_min)), x_T, noise if noise is not None else Batch(generator))
    try:
        x, sigma = next(gen)
        while True:
            x, sigma = gen.send(_clip(cm(x, float(sigma), cond), clip))
    except StopIteration as stop:
        return stop.value


def onestep(cm: Any, x_T: Tensor, cond: Any = None, clip: float | None = None) -> Tensor:
    """One-step generation x0 = f(x_T, T) with T = cm.sigma_max (CM Sec. 3)."""
    return multistep(cm, x_T, [cm.sigma_max], cond=cond, clip=clip)


def geometric_sigmas(steps: int, sigma_min: float, sigma_max: float) -> list[float]:
    """[T, tau_1, ..., tau_{steps-1}]: the intermediate sigmas spaced geometrically between T and eps (the start of
    the CM ternary search, fewstep.distill.times.search_sigmas)."""
    if steps < 1:
        raise ValueError(f"a consistency sampler takes at least 1 step, got {steps}")
    return [sigma_max] + [sigma_max * (sigma_min / sigma_max) ** (i / steps) for i in range(1, steps)]
