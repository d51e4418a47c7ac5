"""Stochastic step kinds of the one engine, and the noise they draw.

A stochastic step first integrates the ODE from sigma_s to a lower `target` d (every deterministic decision of the
step applies there), then adds fresh noise of std u up to sigma_t; EDM's churn adds noise before the evaluation:
  ancestral  d = sqrt(t^2 - u^2), u = min(t, eta sqrt(t^2 (s^2 - t^2) / s^2))   (k-diffusion get_ancestral_step)
  sde        d = t e^{-eta h}, u = t sqrt(1 - e^{-2 eta h}), h = log(s/t); derivative nodes are placed on the real
             step s -> t (SDE-DPM-Solver++, Lu et al. 2022b; diffusers "sde-dpmsolver++", k-diffusion
             sample_dpmpp_2m_sde)
  renoise    d = `down` or (1 - gamma) t with gamma = eta (TCD's strategic stochastic sampling, Zheng et al. 2024,
             in sigma), u = sqrt(t^2 - max(d, boundary)^2): gamma = 1 is the consistency multistep sampler
             (Song et al. 2023, Alg. 1: x <- f(x) + sqrt(t^2 - eps^2) z, boundary = eps; LCM with boundary 0)
  churn      sigma_hat = s (1 + churn), x += sqrt(sigma_hat^2 - s^2) S_noise z, then the step runs from sigma_hat
             (Karras et al. 2022, Alg. 2 lines 4-6)
Noise: draw k of a run (counted in the order the steps draw) comes from a noise source `noise(k, x) -> z ~ N(0, I)`
shaped like x. Per-sample sources (fs.seed.PerSample, a list of torch.Generators) make sample i depend only on
its own seed, never on the batch; one torch.Generator draws for the whole batch (diffusers' convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .plan import Plan, Step

NoiseSource = Callable[[int, Tensor], Tensor]


def target(st: Step, s: float, t: float) -> float:
    """The sigma d the step's deterministic update lands on before its fresh noise (t for an ODE step)."""
    if st.noise == "none" or t == 0:
        return t
    if st.noise == "ancestral":
        return math.sqrt(t**2 - _up(st.eta, s, t) ** 2)
    if st.noise == "sde":
        return t * math.exp(-st.eta * math.log(s / t))
    return float(st.down) if st.down is not None else (1 - st.eta) * t


def _up(eta: float, s: float, t: float) -> float:
    return min(t, eta * math.sqrt(t**2 * (s**2 - t**2) / s**2)) if eta else 0.0


def up(st: Step, s: float, t: float, d: float) -> float:
    """The std of the fresh noise that takes the sample from sigma d to sigma t (times the step's s_noise)."""
    if st.noise == "ancestral":
        u = _up(st.eta, s, t)
    elif st.noise == "sde":
        u = t * math.sqrt(-math.expm1(-2 * st.eta * math.log(s / t)))
    else:
        u = math.sqrt(max(t**2 - max(d, st.boundary) ** 2, 0.0))
    return u * st.s_noise


def churn_gammas(sigmas: Sequence[float], S_churn: float, S_tmin: float = 0.0, S_tmax: float = math.inf) -> list:
    """EDM's gamma_i = min(S_churn / N, sqrt(2) - 1) where S_tmin <= sigma_i <= S_tmax, else 0 (Karras Alg. 2)."""
    n = len(sigmas) - 1
    g = min(S_churn / n, math.sqrt(2) - 1)
    return [g if S_tmin <= s <= S_tmax and s > 0 else 0.0 for s in list(sigmas)[:-1]]


def with_churn(plan: Plan, S_churn: float, S_tmin: float = 0.0, S_tmax: float = math.inf,
               S_noise: float = 1.0) -> Plan:
    """`plan` with EDM's churn on every step (Karras et al. 2022, Alg. 2); S_churn = 0 returns it unchanged."""
    for name, v in (("S_churn", S_churn), ("S_noise", S_noise)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    if S_churn == 0:
        return plan
    gam = churn_gammas(plan.sigmas.tolist(), S_churn, S_tmin, S_tmax)
    steps = list(plan.steps)
    for i, g in enumerate(gam):  # no churn where nothing is evaluated at x_T (AFS) or UniC reuses the evaluation
        if g and not (i == 0 and plan.afs != "none") and not (i and steps[i - 1].corrector != "none"):
            steps[i] = replace(steps[i], churn=g, s_noise=S_noise)
    return Plan(plan.sigmas, tuple(steps), afs=plan.afs, afs_mean=plan.afs_mean, name=plan.name, order=plan.order)


# -- noise sources ----------------------------------------------------------------------------------------------
class Batch:
    """One torch.Generator (None: torch's global RNG) for the whole batch, as diffusers' `randn_tensor` draws:
    sample i then depends on the batch it is in."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, k: int, x: Tensor) -> Tensor:
        return torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)


class Stacked:
    """One torch.Generator per sample (diffusers' list convention, EDM's StackedRandomGenerator)."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def __call__(self, k: int, x: Tensor) -> Tensor:
        if len(self.generators) != x.shape[0]:
            raise ValueError(f"{len(self.generators)} generators for a batch of {x.shape[0]}; give one per sample")
        return torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype)
                            for g in self.generators]).to(x.device)


class Given:
    """Replays given noise tensors: draw k is noise[k] (tests, and callers that hold their own noise)."""

    def __init__(self, noise: Sequence[Tensor]) -> None:
        self.noise = list(noise)

    def __call__(self, k: int, x: Tensor) -> Tensor:
        if k >= len(self.noise):
            raise ValueError(f"the plan draws noise {k + 1} times but {len(self.noise)} noise tensors were given")
        return self.noise[k]


def zeros(k: int, x: Tensor) -> Tensor:
    """No noise (a dry run that only reads the evaluation sigmas)."""
    return torch.zeros_like(x)


def source(generator: Any, plan: Plan) -> NoiseSource | None:
    """The noise source for `generator` (None, a torch.Generator, one per sample, or a callable noise(k, x))."""
    if isinstance(generator, torch.Generator):
        return Batch(generator)
    if isinstance(generator, (list, tuple)) and generator and all(isinstance(g, torch.Generator) for g in generator):
        return Stacked(generator)
    if generator is None or callable(generator):
        if generator is None and plan.stochastic:
            i = next(i for i, st in enumerate(plan.steps) if st.stochastic)
            kind = plan.steps[i].noise if plan.steps[i].noise != "none" else "churn"
            raise ValueError(f"plan step {i} draws fresh noise ({kind}); pass generator=fs.seed.PerSample(seeds) "
                             "(sample i's noise from its own seed, whatever the batch) or a torch.Generator")
        return generator
    raise TypeError(f"generator must be a torch.Generator, a list of them (one per sample), or a noise source "
                    f"noise(k, x) such as fs.seed.PerSample(seeds); got {type(generator).__name__}")
