"""`fs.search.search`: S^3 (Liu et al. 2024) for any denoiser - the best USF plan under an NFE budget.

Searched plan files hold the plan JSON plus a "search" object (command, seed, budget, score, wall time), which
`fs.Plan.from_json` keeps in `plan.metadata["search"]`; `read_plan_file` returns it beside the plan.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..denoiser import check_denoiser
from ..solvers.plan import MAX_NFE, Plan
from . import evolve
from .score import METRICS, Scorer
from .space import Space


def default_budget(nfe: int) -> int:
    """Plan evaluations when budget=None: all hand-made plans, 24 random ones and ~5 guided stages (a few minutes
    on 2 cores for the digits teacher at 128 samples)."""
    return 160 if nfe <= 6 else 128


def data_mean(den: Any, x_T: torch.Tensor, sigma_max: float, cond: Any = None) -> torch.Tensor:
    """E[x0] for the analytical first step (USF 'average_x0'): exact for a mixture, else mean_b D(x_T, sigma_max)."""
    from ..analytic import GaussianMixture

    if isinstance(den, GaussianMixture):
        return (den.weights.reshape(-1, *[1] * len(den.shape)) * den.means).sum(0)
    with torch.no_grad():
        return den(x_T, sigma_max, cond).double().mean(0).cpu()


def _check(den: Any, nfe: Any, shape: Sequence[int], sigma_min: float, sigma_max: float, metric: str) -> tuple:
    check_denoiser(den)
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer (the denoiser evaluations per sample), got {nfe!r}")
    if nfe > MAX_NFE:
        raise ValueError(f"nfe={nfe} exceeds the limit of {MAX_NFE} denoiser evaluations per sample "
                         "(fewstep.solvers.plan.MAX_NFE); search a smaller nfe")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints (one sample's shape, e.g. (1, 8, 8)), got {shape!r}") \
            from None
    own = getattr(den, "shape", None)
    if own is not None and tuple(own) != shape:
        raise ValueError(f"shape {shape} does not match the denoiser's sample shape {tuple(own)}; pass "
                         f"shape={tuple(own)}")
    lo, hi = float(den.sigma_min), float(den.sigma_max)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if sigma_min < lo * (1 - 1e-6) or sigma_max > hi * (1 + 1e-6):
        raise ValueError(f"[sigma_min, sigma_max] = [{sigma_min}, {sigma_max}] leaves the denoiser's range "
                         f"[{lo}, {hi}]; pass sigma_min={lo}, sigma_max={hi}")
    return shape


def search(den: Any, nfe: int, shape: Sequence[int], sigma_min: float = 0.002, sigma_max: float = 80.0,
           n_samples: int = 128, budget: int | None = None, seed: int = 0, metric: str = "rms", cond: Any = None,
           progress: bool = False, state_path: str | os.PathLike | None = None, *,
           config: evolve.Config | None = None, dataset: str | None = None, workers: int = 1,
           on_stage: Callable[[dict[str, Any]], None] | None = None, model_id: str | None = None) -> Plan:
    """S^3: evolve USF plans with exactly `nfe` evaluations, scored on `n_samples` fixed noises (seed), guided by
    a ranking predictor; returns the best plan (plan.extra holds score, evaluations, wall time, baselines).

    budget = plan evaluations (None: `default_budget`). state_path: resumable state, written after every stage."""
    shape = _check(den, nfe, shape, float(sigma_min), float(sigma_max), metric)
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ValueError(f"budget must be a positive number of plan evaluations, got {budget!r}")
    if metric == "fd" and dataset is None:
        from ..zoo.lookup import dataset_of

        dataset = dataset_of(den)  # config["data"] may be a name or {"name": ..., "split": ...}
    budget = budget if budget is not None else default_budget(nfe)
    cfg = config or evolve.Config(budget=budget)
    if cfg.budget != budget:
        cfg = evolve.Config(**{**cfg.__dict__, "budget": budget})
    problem = {"model": model_id or type(den).__name__, "nfe": nfe, "shape": list(shape),
               "sigma_min": float(sigma_min), "sigma_max": float(sigma_max), "n_samples": n_samples, "seed": seed,
               "metric": metric}
    state, ref = None, None
    if state_path is not None and Path(state_path).is_file():
        state, ref = evolve.load_state(state_path, problem)
    t0 = time.perf_counter()
    scorer = Scorer(den, shape, n_samples, seed, float(sigma_max), metric, cond, ref=ref, dataset=dataset)
    ref_s = time.perf_counter() - t0
    space = Space(nfe, float(sigma_min), float(sigma_max),
                  afs_mean=data_mean(den, scorer.x_T, float(sigma_max), cond).to(torch.float64))
    if state is None:
        state = evolve.new_state(problem, cfg)
        state["reference_s"] = ref_s
    save = (lambda st: evolve.save_state(state_path, st, scorer.cached_ref())) if state_path is not None else None
    display = None
    if progress:
        from .progress import Display

        display = Display(budget, nfe)
    callbacks = [c for c in (on_stage, display) if c is not None]

    def stage(st: dict[str, Any]) -> None:
        for c in callbacks:
            c(st)

    try:
        evolve.run(space, lambda plans: scorer.evaluate(plans, workers), cfg, seed, state, save, stage)
        if cfg.final > 0:
            val = Scorer(den, shape, n_samples, _val_seed(seed), float(sigma_max), metric, cond, dataset=dataset)
            evolve.finalize(state, lambda plans: val.evaluate(plans, workers), cfg.final, save)
    finally:
        if display is not None:
            display.close()
    plan, score = evolve.best(state)
    key = plan.to_json(indent=None)
    base = {r["name"]: r["score"] for r in state["evaluated"] if r["stage"] == 0 and "/" in (r["name"] or "")}
    best_base = min(base, key=lambda k: _key(base[k])) if base else None
    plan = Plan(plan.sigmas, plan.steps, afs=plan.afs, afs_mean=plan.afs_mean, name=f"searched-nfe{nfe}",
                extra={"score": score, "metric": metric, "evaluations": len(state["evaluated"]),
                       "wall_s": state["wall_s"] + state.get("reference_s", 0.0), "seed": seed, "budget": budget,
                       "n_samples": n_samples, "best_baseline": best_base,
                       "best_baseline_score": base.get(best_base, math.nan),
                       "val_score": next((r["val"] for r in state.get("final", []) if r["plan"] == key),
                                        math.nan),
                       "tau": [s["tau"] for s in state["stages"]]})
    return plan


def _val_seed(seed: int) -> int:
    """Seed of the validation noise set: disjoint from the search noise (seeds_for spaces runs 1e6 apart)."""
    return seed + 500_000


def _key(s: float) -> float:
    return s if math.isfinite(s) else math.inf


def write_plan_file(path: str | os.PathLike, plan: Plan, meta: dict[str, Any]) -> Path:
    """Write plan JSON + {"search": meta} atomically (the format `fewstep sample --plan` and the zoo read); NaN/inf
    values in meta are written as null (strict JSON)."""
    from ..io import atomic_write_text

    return atomic_write_text(path, replace(plan, metadata={**plan.metadata, "search": meta}).to_json())


def read_plan_file(path: str | os.PathLike) -> tuple[Plan, dict[str, Any]]:
    """(plan, search metadata) from a searched plan file or a bare plan JSON file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no plan file at {p}; write one with `fewstep search --out {p}`")
    plan = Plan.from_json(p.read_text())
    return plan, plan.metadata.get("search", {})
