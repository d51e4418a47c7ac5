"""Where a sample went non-finite: the engine records one finiteness flag per denoiser output and per update into a
preallocated tensor (no host sync, no per-step objects on the hot path) and reads them only when the output holds
NaN/inf, to name the culprit."""

from __future__ import annotations

import json

import torch
from torch import Tensor

from ..errors import FewstepError
from .plan import Plan


class NonFiniteError(FewstepError, FloatingPointError):
    """Sampling produced NaN/inf from a finite x_T: names the plan step or the denoiser call responsible."""


class Flags:
    """One run's finiteness flags: slot k holds the sum of the k-th watched tensor (NaN/inf iff some entry is, or
    the sum overflows, which only a near-overflowing tensor does); `where[k]` says what it was (kind, step, sigma or
    detail). A sum costs a fraction of one update's axpy, where isfinite(x).all() costs several. Local to one run."""

    def __init__(self, plan: Plan, device: torch.device) -> None:
        n = 1 + 3 * len(plan.steps) + 2 * sum(len(st.ratios) for st in plan.steps)  # x_T; D, UniC, update; inters
        n += sum(st.churn != 0 for st in plan.steps)  # EDM churn
        self.sums = torch.zeros(n, dtype=torch.float64, device=device)
        self.where: list[tuple] = []

    def __call__(self, x: Tensor, *where: object) -> None:
        self.sums[len(self.where)] = x.sum()
        self.where.append(where)


def finite(x: Tensor) -> bool:
    """All entries finite (the cheap sum test first; the exact one only if the sum is not finite)."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def diverged(plan: Plan, flags: Flags) -> NonFiniteError:
    """The error for the first non-finite value: the denoiser's output, or a plan step's update from finite ones."""
    ok = torch.isfinite(flags.sums[: len(flags.where)]).tolist()
    where = next((w for good, w in zip(ok, flags.where, strict=True) if not good), ("cast",))
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
    part = {"step": "update", "unic": "UniC corrector", "churn": "churn"}.get(kind) or f"intermediate point {where[2]}"
    return NonFiniteError(f"plan step {i} ({part}, sigma {s:.6g} -> {t:.6g}, decisions "
                          f"{json.dumps(plan.steps[i].to_dict())}) turned finite denoiser outputs into NaN/inf: its "
                          "coefficients overflow; fix that step's coef/second_scale/relaxation or the sigma grid")
