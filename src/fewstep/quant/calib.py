"""Calibration data and activation calibration.

TFMQ-DM: the network inputs of ONE sampling pass with the plan the model will run (the maintainer's one-pass
generator, TFMQ-DM#1), every evaluation kept and keyed by its sigma. Q-Diffusion (Li et al. 2023, Sec. 3.2,
`get_train_samples`): intermediate inputs sampled uniformly over a long trajectory (here a 50-step Euler run on the
EDM grid, every other step), independent of the plan. Activations: per key (FSC) or one set over all (Q-Diffusion),
each by the MSE clip search on the layer inputs recorded on the calibration data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..guidance import CFG
from ..seed import SEED_STRIDE, PerSample, noise, seeds_for
from ..solvers.constructors import get as plan_get
from ..solvers.engine import sample
from ..solvers.plan import Plan
from ..solvers.renoise import multistep
from .model import QuantizedDenoiser, null_label

QDIFF_STEPS, QDIFF_EVERY = 50, 2
ACT_SAMPLES = 4096  # recorded input values kept per (layer, key) for the clip search


@dataclass
class Calib:
    """Recorded denoiser inputs: x [N, ...], sigma [N] (float64), cond [N] (labels) or None, and the distinct
    sigmas in evaluation order (the plan's finite set)."""

    x: Tensor
    sigma: Tensor
    cond: Tensor | None
    keys: list[float]

    def subset(self, n: int, seed: int = 0) -> Calib:
        """n rows drawn uniformly over every recorded evaluation."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.x), generator=g)[:n]
        return Calib(self.x[idx], self.sigma[idx], None if self.cond is None else self.cond[idx], self.keys)


class Recorder:
    """A denoiser that records its inputs and evaluates the wrapped one (a CFG wrapper inside records both branches)."""

    def __init__(self, den: Any) -> None:
        self.den, self.sigma_min, self.sigma_max = den, den.sigma_min, den.sigma_max
        self.shape = getattr(den, "shape", None)
        self.calls: list[tuple[Tensor, float, Any]] = []

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = float(sigma.reshape(-1)[0]) if torch.is_tensor(sigma) else float(sigma)
        self.calls.append((x.detach().clone(), s, cond))
        return self.den(x, sigma, cond)

    def result(self, every: int = 1) -> Calib:
        calls = self.calls[::every]
        xs = torch.cat([c[0] for c in calls])
        sig = torch.cat([torch.full((len(c[0]),), c[1], dtype=torch.float64) for c in calls])
        conds = [c[2] for c in calls]
        cond = None
        if all(torch.is_tensor(c) for c in conds):
            cond = torch.cat(conds)
        elif any(c is not None for c in conds):
            n = [len(c[0]) for c in calls]
            cond = torch.cat([c if torch.is_tensor(c) else torch.full((k,), -1, dtype=torch.long)
                              for c, k in zip(conds, n, strict=True)])
        keys = list(dict.fromkeys(c[1] for c in self.calls))
        return Calib(xs, sig, cond, keys)


def _guided(den: Any, labels: Tensor | None, guidance: float | None) -> Any:
    return den if guidance is None or guidance == 1.0 or labels is None else CFG(den, float(guidance))


@torch.no_grad()
def plan_pass(den: Any, plan: Plan | list[float], n: int, seed: int, labels: Tensor | None = None,
              guidance: float | None = None) -> Calib:
    """TFMQ's calibration data: every network input of one sampling pass of `plan` (a Plan, or a consistency
    student's sigmas) on n noises."""
    rec = Recorder(den)
    d = _guided(rec, labels, guidance)
    shape = tuple(den.shape)
    if isinstance(plan, Plan):
        x_T = noise(n, seed, shape, float(plan.sigmas[0]))
        sample(d, x_T, plan, cond=labels, generator=PerSample(seeds_for(n, seed), SEED_STRIDE) if plan.stochastic
               else None)
    else:
        x_T = noise(n, seed, shape, float(plan[0]))
        multistep(d, x_T, list(plan), PerSample(seeds_for(n, seed), SEED_STRIDE), cond=labels, clip=1.0)
    return rec.result()


@torch.no_grad()
def trajectory_pass(den: Any, n: int, seed: int, labels: Tensor | None = None,
                    guidance: float | None = None) -> Calib:
    """Q-Diffusion's calibration data: inputs at every QDIFF_EVERY-th step of a QDIFF_STEPS-step Euler trajectory
    (EDM grid), uniform over the trajectory and the same whatever plan the model later runs."""
    rec = Recorder(den)
    plan = plan_get("euler", nfe=QDIFF_STEPS, sigma_min=den.sigma_min, sigma_max=den.sigma_max, grid="karras")
    sample(_guided(rec, labels, guidance), noise(n, seed, tuple(den.shape), float(plan.sigmas[0])), plan,
           cond=labels)
    out = rec.result(QDIFF_EVERY)
    out.keys = [float(s) for s in out.sigma.unique()]
    return out


def batches(c: Calib, batch: int, null: int = 0) -> list[tuple[Tensor, float, Any]]:
    """Calibration rows grouped by sigma, in batches (one key per denoiser call); a -1 label (no condition) among
    labelled rows becomes the network's null label."""
    out = []
    for s in c.sigma.unique(sorted=True).flip(0):
        idx = (c.sigma == s).nonzero().squeeze(1)
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            out.append((c.x[j], float(s), None if c.cond is None else _cond(c.cond[j], null)))
    return out


def _cond(y: Tensor, null: int) -> Tensor | None:
    return None if bool((y < 0).all()) else torch.where(y < 0, null, y)


@torch.no_grad()
def calibrate_activations(q: QuantizedDenoiser, c: Calib, batch: int = 256, seed: int = 0) -> None:
    """Record every quantized layer's input on the calibration data (weights quantized, activations not) and set
    each activation quantizer by the MSE clip search: per key (FSC) or pooled over all steps (one set)."""
    g = torch.Generator().manual_seed(seed)
    pool: dict[tuple[int, int, int], list[Tensor]] = defaultdict(list)
    layers = {id(m): m for m in q.qlayers() if m.aq is not None}

    def record(layer: Any, x: Tensor) -> None:
        if id(layer) not in layers:
            return
        k = q.ctx.key if q.fsc else 0
        parts = [x[:, :layer.split], x[:, layer.split:]] if layer.aq2 is not None else [x]
        for p_i, part in enumerate(parts):
            flat = part.detach().reshape(-1)
            take = flat[torch.randint(len(flat), (min(len(flat), ACT_SAMPLES),), generator=g)]
            pool[(id(layer), k, p_i)].append(torch.cat([take, flat.min()[None], flat.max()[None]]))

    q.set_act(False)
    q.ctx.record, cache = record, q.ctx.cache
    q.ctx.cache = False
    try:
        for x, s, y in batches(c, batch, null_label(q)):
            q(x, s, y)
    finally:
        q.ctx.record, q.ctx.cache = None, cache
    for (lid, k, p_i), vals in pool.items():
        v = torch.cat(vals)
        if len(v) > 2 * ACT_SAMPLES:  # keep the extremes: the clip search scans ratios of [min, max]
            v = torch.cat([v[torch.randperm(len(v), generator=g)[:2 * ACT_SAMPLES]], v.min()[None], v.max()[None]])
        layer = layers[lid]
        (layer.aq if p_i == 0 else layer.aq2).calibrate(k, v)
    q.set_act(True)
