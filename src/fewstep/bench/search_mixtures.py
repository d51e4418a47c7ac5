"""`fewstep bench search`, analytic part: S^3 plans vs diffusers' schedulers and the hand-made plans on three
Gaussian mixtures, mean and 99th-percentile per-sample RMS error against the exact PF-ODE solution (DOP853) from
held-out noise; and the choice of the search objective (mean vs rmse vs mean + CVaR) on the DDPM-range mixture.

Targets (issue 19): searched mean <= 0.5x the best diffusers scheduler at NFE 5, <= 0.7x at NFE 10, and p99 <=
1.0x the best diffusers scheduler's. "Best diffusers" is picked by mean on the very held-out noise (an oracle
pick, in diffusers' favour), after screening every setting on the first `screen` held-out noises.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from ..analytic import GaussianMixture, toy_mixture
from ..noise import VPDiscrete
from ..search.api import search
from ..search.score import Scorer, reduce
from ..search.space import Space
from ..seed import HELD_OUT_SEED
from . import anchors

SIGMA_DDPM = VPDiscrete.from_betas().sigma_max  # 157.4: a 1000-step linear-beta DDPM's range
TARGETS = {5: 0.5, 10: 0.7}  # searched mean / best diffusers mean; p99 ratio <= 1.0 at every NFE
FAMILIES = ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm")


def mixtures() -> dict[str, GaussianMixture]:
    """The three benchmark mixtures: dimension 16-256, 4-16 components, three spreads, sigma_max 80 and 157."""
    return {"16d-4": toy_mixture(16, 4, spread=3.0, std=0.3, seed=0, sigma_max=80.0),
            "64d-10": toy_mixture(64, 10, spread=1.0, std=0.3, seed=0, sigma_max=SIGMA_DDPM),
            "256d-16": toy_mixture(256, 16, spread=0.5, std=0.5, seed=0, sigma_max=SIGMA_DDPM)}


def stats(err: Tensor | None) -> dict[str, float]:
    """mean, median, p99, max, rmse and mean + CVaR_0.95 of per-sample errors (all inf for a diverged plan)."""
    if err is None or not torch.isfinite(err).all():
        return {k: math.inf for k in ("mean", "median", "p99", "max", "rmse", "cvar")}
    e = err.double()
    return {"mean": float(e.mean()), "median": float(e.median()), "p99": float(torch.quantile(e, 0.99)),
            "max": float(e.max()), "rmse": float(reduce(e, "rmse")), "cvar": float(reduce(e, "cvar"))}


def plan_errors(held: Scorer, plan: Any) -> Tensor | None:
    """Per-sample errors of a plan on the held-out noise; None when it fails."""
    try:
        return held.errors(held.run(plan))
    except (FloatingPointError, RuntimeError, torch.linalg.LinAlgError):
        return None


def diffusers_errors(den: Any, held: Scorer, nfe: int, screen: int, keep: int) -> dict[str, Tensor]:
    """Per-sample errors of diffusers settings (anchors.variants x table sigma_min) on the held-out noise: all
    screened on the first `screen` noises, the `keep` best by mean and the `keep` best by rmse run on all."""
    hi = float(den.sigma_max)
    labels = [(lab, smin) for lab in anchors.variants() for smin in anchors.SIGMA_MINS]

    def errs(lab: str, smin: float, n: int) -> Tensor:
        with torch.no_grad():
            x = anchors.solve(lab, den, held.x_T[:n].double(), nfe, hi, smin)
        e = (x.double() - held.ref[:n].double()).pow(2).flatten(1).mean(1).sqrt()
        return torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))

    n = len(held.x_T)
    if 0 < screen < n:
        pre = {(lab, s): stats(errs(lab, s, screen)) for lab, s in labels}
        by = lambda k: sorted(pre, key=lambda c: pre[c][k])[:keep]  # noqa: E731
        labels = list(dict.fromkeys(by("mean") + by("rmse")))
    return {f"{lab}/{s}": errs(lab, s, n) for lab, s in labels}


def _best(d: dict[str, dict[str, float]], key: str = "mean") -> str:
    return min(d, key=lambda k: d[k][key])


def mixture_rows(nfes: list[int], budget: int, n_search: int, n_held: int, screen: int = 128, keep: int = 6,
                 names: list[str] | None = None, objective: str | None = None) -> list[dict[str, Any]]:
    """Per mixture and NFE: the search (seed 0) and its held-out stats beside every hand-made plan's and the best
    diffusers scheduler's (by mean; also the lowest p99 of any diffusers setting)."""
    rows = []
    for name, den in mixtures().items():
        if names and name not in names:
            continue
        lo, hi, shape = float(den.sigma_min), float(den.sigma_max), tuple(den.shape)
        held = Scorer(den, shape, n_held, HELD_OUT_SEED, hi)
        for nfe in nfes:
            t0 = time.perf_counter()
            kw = {"objective": objective} if objective else {}
            plan = search(den, nfe, shape, lo, hi, n_samples=n_search, budget=budget, seed=0, **kw)
            cost = time.perf_counter() - t0
            obj = plan.extra["objective"]
            s = stats(plan_errors(held, plan))
            base = {p.name: stats(plan_errors(held, p)) for p in Space(nfe, lo, hi).baselines()}
            diff = {k: stats(v) for k, v in diffusers_errors(den, held, nfe, screen, keep).items()}
            b, d, dp = _best(base), _best(diff), _best(diff, "p99")
            row = {"mixture": name, "dim": shape[0], "components": len(den.weights), "sigma_max": hi, "nfe": nfe,
                   "searched": s, "chosen": plan.extra["chosen"], "plan_name": plan.name,
                   "best_baseline": b, "best_baseline_stats": base[b], "diffusers_best": d, "diffusers": diff[d],
                   "diffusers_best_p99": dp, "diffusers_p99_min": diff[dp]["p99"],
                   "ratio_mean": s["mean"] / diff[d]["mean"], "ratio_p99": s["p99"] / diff[d]["p99"],
                   "ratio_mean_baseline": s["mean"] / base[b]["mean"], "search_s": cost,
                   "ratio_objective_baseline": s[obj] / min(v[obj] for v in base.values()),
                   "search_score": plan.extra["score"], "search_best_baseline": plan.extra["best_baseline_score"],
                   "evaluations": plan.extra["evaluations"], "objective": plan.extra["objective"],
                   "baselines": base, "diffusers_all": diff, "plan": plan.to_json(indent=None)}
            for fam in FAMILIES:
                cand = {k: v for k, v in base.items() if k.split("/")[0] == fam}
                row[fam] = cand[_best(cand)] if cand else stats(None)
            t = TARGETS.get(nfe)
            row["meets"] = (t is None or row["ratio_mean"] <= t) and row["ratio_p99"] <= 1.0
            rows.append(row)
    return rows


def objective_study(objectives: list[str], seeds: list[int], n_search: int = 128, n_held: int = 1024,
                    nfe: int = 5, name: str = "64d-10", budget: int | None = None) -> list[dict[str, Any]]:
    """The search objective's effect on the tail: default-budget searches (n_search noises, each seed) on one
    mixture with each objective, scored on held-out noise: mean, p99 and rmse per seed and their averages."""
    den = mixtures()[name]
    lo, hi, shape = float(den.sigma_min), float(den.sigma_max), tuple(den.shape)
    held = Scorer(den, shape, n_held, HELD_OUT_SEED, hi)
    rows = []
    for obj in objectives:
        per = []
        for sd in seeds:
            plan = search(den, nfe, shape, lo, hi, n_samples=n_search, budget=budget, seed=sd, objective=obj)
            per.append({**stats(plan_errors(held, plan)), "seed": sd, "chosen": plan.extra["chosen"]})
        avg = {k: sum(p[k] for p in per) / len(per) for k in ("mean", "p99", "rmse", "median")}
        rows.append({"objective": obj, "mixture": name, "nfe": nfe, **avg, "per_seed": per,
                     "searched": sum(p["chosen"] == "searched" for p in per)})
    return rows
