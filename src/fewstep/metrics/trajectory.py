"""Solver error against the exact probability-flow ODE solution from the same noise: the cheap, noise-free
score of the solver benchmark and the plan search (the "distance to the ground-truth trajectory" of
DPM-Solver, Lu et al. 2022, Sec. 6, and S^3's reference-trajectory metric)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..reference import reference_solve
from ..solvers.engine import sample


def rms(x: Tensor, ref: Tensor) -> Tensor:
    """Per-sample root-mean-square difference [B] over all non-batch dimensions."""
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs reference {tuple(ref.shape)}")
    return (x.double() - ref.double()).pow(2).reshape(len(x), -1).mean(1).sqrt()


def reference_x0(den: Any, x_T: Tensor, sigma_from: float, cond: Any = None, chunk: int | None = None) -> Tensor:
    """Exact end points x0 of the PF-ODE from x_T at sigma_from (fs.reference_solve to sigma = 0), in chunks of
    `chunk` samples (None: one solve) so a huge batch does not share one adaptive step sequence."""
    chunk = chunk or len(x_T)
    outs = []
    for i in range(0, len(x_T), chunk):
        c = cond[i:i + chunk] if torch.is_tensor(cond) and cond.ndim > 0 and len(cond) == len(x_T) else cond
        outs.append(reference_solve(den, x_T[i:i + chunk], sigma_from, 0.0, cond=c))
    return torch.cat(outs)


def trajectory_error(den: Any, plan: Any, x_T: Tensor, cond: Any = None, ref: Tensor | None = None
                     ) -> dict[str, Any]:
    """Run `plan` from x_T (already scaled by plan.sigmas[0]) and compare with the reference end points `ref`
    (computed when not given). Returns {"rms": mean per-sample RMS, "rms_max", "per_sample" [B], "nfe"}."""
    if ref is None:
        ref = reference_x0(den, x_T, float(plan.sigmas[0]), cond)
    with torch.no_grad():
        x0 = sample(den, x_T, plan, cond=cond)
    per = rms(x0, ref.to(x0.device))
    return {"rms": per.mean().item(), "rms_max": per.max().item(), "per_sample": per, "nfe": int(plan.nfe)}
