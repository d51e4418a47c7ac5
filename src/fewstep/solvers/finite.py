"""Where a sample went non-finite: the engine records one all-finite flag per denoiser output and per update
(no host sync on the hot path) and reads them only when the output holds NaN/inf, to name the culprit."""

from __future__ import annotations

import json

import torch
from torch import Tensor

from ..errors import FewstepError
from .plan import Plan

Flags = list[tuple[Tensor, tuple]]  # (all-finite 0-d bool tensor, (kind, step, sigma or detail))


class NonFiniteError(FewstepError, FloatingPointError):
    """Sampling produced NaN/inf from a finite x_T: names the plan step or the denoiser call responsible."""


def flag(flags: Flags, x: Tensor, *where: object) -> None:
    """Record whether x is all finite (a device tensor; synchronised only by `diverged`)."""
    flags.append((torch.isfinite(x).all(), where))


def diverged(plan: Plan, flags: Flags) -> NonFiniteError:
    """The error for the first non-finite value: the denoiser's output, or a plan step's update from finite ones."""
    ok = torch.stack([f.cpu() for f, _ in flags]).tolist() if flags else []
    where = next((w for good, (_, w) in zip(ok, flags, strict=True) if not good), ("cast",))
    kind = where[0]
    if kind == "x_T":
        return NonFiniteError("x_T holds NaN/inf values; check the noise (x_T = noise * plan.sigmas[0])")
    if kind == "D":
        return NonFiniteError(f"the denoiser returned NaN/inf at plan step {where[1]} (sigma={where[2]:.6g}) from a "
                              "finite input; check the model (weights, dtype, its sigma range) - the plan is not "
                              "at fault")
    if kind == "cast":
        return NonFiniteError("the samples overflow x_T's dtype on the final cast; pass x_T in float32")
    i = where[1]
    s, t = plan.sigmas[i].item(), plan.sigmas[i + 1].item()
    part = {"step": "update", "unic": "UniC corrector"}.get(kind) or f"intermediate point {where[2]}"
    return NonFiniteError(f"plan step {i} ({part}, sigma {s:.6g} -> {t:.6g}, decisions "
                          f"{json.dumps(plan.steps[i].to_dict())}) turned finite denoiser outputs into NaN/inf: its "
                          "coefficients overflow; fix that step's coef/second_scale/relaxation or the sigma grid")
