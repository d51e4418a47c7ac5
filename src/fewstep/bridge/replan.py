"""Plans a diffusers scheduler has to derive: at another NFE, from a later step on, or over a foreign schedule.

A named plan is rebuilt from its constructor record {"name", "sigma_min", "sigma_max", "grid", "options"}
(`fs.plans.get`, USF constructors); a searched plan has none and keeps its fixed NFE. `tail` starts a plan at a later
grid point (img2img's begin index, an inpainting restart) on the same grid, so the evaluation sigmas stay those of
the full plan; multistep orders fall to what the evaluations made since the start support (the usual warm start,
Lu et al. 2022b Alg. 2).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ..grids import GRIDS
from ..solvers.constructors import REGISTRY, get
from ..solvers.plan import Plan, Step

DEFAULT_SOLVER, DEFAULT_GRID, DEFAULT_NFE = "dpm_solver_pp_2m", "logsnr", 10
_JSON_GRIDS = tuple(g for g in GRIDS if g != "vp_discrete")  # vp_discrete needs a process object (not JSON data)


def constructor(name: str, sigma_min: float, sigma_max: float, grid: str = DEFAULT_GRID,
                **options: Any) -> dict[str, Any]:
    """A constructor record (JSON data) for `fs.plans.get(name, nfe, sigma_min, sigma_max, grid, **options)`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown plan constructor {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if grid not in _JSON_GRIDS:
        raise ValueError(f"grid {grid!r} cannot be recorded in a scheduler config; use one of {', '.join(_JSON_GRIDS)}")
    return {"name": name, "sigma_min": float(sigma_min), "sigma_max": float(sigma_max), "grid": grid,
            "options": dict(options)}


def build(record: dict[str, Any], nfe: int) -> Plan:
    """The recorded constructor's plan at `nfe` evaluations."""
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"num_inference_steps must be a positive integer, got {nfe!r}")
    return get(record["name"], nfe=nfe, sigma_min=record["sigma_min"], sigma_max=record["sigma_max"],
               grid=record["grid"], **record.get("options", {}))


def _same(a: Plan, b: Plan) -> bool:
    """Same decisions, and grids equal up to the last bits (a grid's exp/log or rho round trip)."""
    da, db = a.to_dict(metadata=False), b.to_dict(metadata=False)
    sa, sb = da.pop("sigmas"), db.pop("sigmas")
    if da != db or len(sa) != len(sb):
        return False
    return all(math.isclose(x, y, rel_tol=1e-12) for x, y in zip(sa, sb, strict=True))


def infer(plan: Plan) -> dict[str, Any] | None:
    """The constructor record that rebuilds `plan` (tried: its name on each JSON grid over its own range), or None.

    None for searched or hand-made plans: no named constructor on a named grid reproduces them.
    """
    s = plan.sigmas.tolist()
    if plan.name not in REGISTRY or "search" in plan.metadata or s[-1] != 0 or len(s) < 3:
        return None
    options = {"afs": plan.afs} if plan.afs == "zero" else {}
    if plan.afs == "mean":
        return None
    for grid in _JSON_GRIDS:
        rec = constructor(plan.name, s[-2], s[0], grid, **options)
        try:
            if _same(build(rec, plan.nfe), plan):
                return rec
        except (ValueError, KeyError):
            continue
    return None


def request_steps(plan: Plan) -> list[int]:
    """For each grid step, the index of its first denoiser request (-1 for an AFS step 0, which makes none)."""
    out, k = [], 0
    for i, st in enumerate(plan.steps):
        start = not (i == 0 and plan.afs != "none")
        out.append(k if start else -1)
        k += int(start) + len(st.ratios)
    return out


def grid_index(plan: Plan, request: int) -> int:
    """The grid step whose first request is `request`; a clear error if it falls inside a singlestep step."""
    starts = request_steps(plan)
    if request in starts:
        return starts.index(request)
    raise ValueError(
        f"evaluation {request} of plan {plan.name or '(unnamed)'} is an intermediate evaluation of a singlestep step, "
        "so the run cannot start or restart there (img2img strength, inpainting); choose a strength that starts on "
        "a grid point or use a multistep plan such as dpm_solver_pp_2m or unipc_bh2"
    )


def _warm(st: Step, n_before: int) -> Step:
    """A multistep step with only `n_before` earlier grid evaluations: keep the lags that exist, lower the order."""
    if st.singlestep:
        return st
    lags = tuple(p for p in st.used_points() if p <= n_before)
    order = min(st.order, len(lags) + 1)
    if order == st.order and lags == st.used_points():
        return st
    points = lags if st.points is not None and order > 1 else None
    return replace(st, order=order, points=points)


def tail(plan: Plan, j: int) -> Plan:
    """The plan from grid point j on (same grid, same evaluation sigmas), warm-started; j = 0 is the plan itself."""
    if j == 0:
        return plan
    steps = tuple(_warm(st, i) for i, st in enumerate(plan.steps[j:]))
    return Plan(plan.sigmas[j:], steps, name=f"{plan.name}[{j}:]" if plan.name else "", order=plan.order)


def foreign_record(schedule: Any, solver: str = DEFAULT_SOLVER, grid: str = DEFAULT_GRID,
                   **options: Any) -> dict[str, Any]:
    """The default constructor for a scheduler made from another scheduler's config: the solver over the whole
    training range [sigma_min, sigma_max] of that schedule."""
    return constructor(solver, schedule.sigma_min, schedule.sigma_max, grid, **options)


def sigma_of_timestep(schedule: Any, t: torch.Tensor) -> torch.Tensor:
    """VE sigma at model timesteps t (the inverse of `TrainSchedule.timestep`), float64."""
    t = torch.as_tensor(t, dtype=torch.float64).cpu()
    if schedule.sigma_data is not None:  # EDM: t = ln(sigma) / 4
        return (4 * t).exp()
    if schedule.is_flow:
        t = t / schedule.num_train_timesteps
    return schedule.process.sigma(t)
