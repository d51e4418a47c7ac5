"""`fewstep bench search`: S^3 searched plans vs every hand-made plan, on noise the search never saw.

(a) analytic mixtures: RMS error vs the exact PF-ODE solution, NFE 3-10; (b) the digits teacher: FD-digits,
NFE 3-10, with the search cost; (c) result vs search budget, and predictor-guided vs plain evolution at equal
evaluations; (d) generalisation: search-noise vs held-out-noise ratios. Liu et al. (2024), S^3, Sec. 5.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..search import evolve
from ..search import predictor as P
from ..search.api import search
from ..search.score import Scorer
from ..search.space import Space

HELD_SEED = 9_001  # held-out noise: never used by a search (searches use seeds 0.. and their validation seed + 5e5)


def mixture() -> Any:
    """The benchmark's analytic model: 8 Gaussians in 16 dimensions (fewstep.analytic.toy_mixture)."""
    from ..analytic import toy_mixture

    return toy_mixture(dim=16, k=8, spread=2.0, std=0.3, seed=0)


def _baselines(held: Scorer, nfe: int, lo: float, hi: float) -> dict[str, float]:
    return {p.name: held(p) for p in Space(nfe, lo, hi).baselines()}


def _diffusers(den: Any, held: Scorer, nfe: int) -> tuple[str, float] | None:
    """Best diffusers scheduler at this NFE on the same noise, through the solver benchmark's driver if present."""
    try:
        from . import solvers
    except ImportError:
        return None
    fn = getattr(solvers, "diffusers_errors", None)
    if fn is None:
        return None
    errs = fn(den, held.x_T, held.ref, nfe)
    if not errs:
        return None
    k = min(errs, key=lambda n: errs[n] if math.isfinite(errs[n]) else math.inf)
    return k, errs[k]


def _held(den: Any, shape: tuple, n: int, hi: float, metric: str, dataset: str | None) -> Scorer:
    return Scorer(den, shape, n, HELD_SEED, hi, metric, dataset=dataset)


def table_run(den: Any, shape: tuple, nfes: list[int], budget: int, n_search: int, n_held: int, metric: str,
              dataset: str | None = None, with_diffusers: bool = False) -> list[dict[str, Any]]:
    """Search at each NFE; score the searched plan and every baseline on held-out noise."""
    lo, hi = float(den.sigma_min), float(den.sigma_max)
    held = _held(den, shape, n_held, hi, metric, dataset)
    rows = []
    for nfe in nfes:
        t0 = time.perf_counter()
        plan = search(den, nfe, shape, lo, hi, n_samples=n_search, budget=budget, seed=0, metric=metric,
                      dataset=dataset)
        cost = time.perf_counter() - t0
        base = _baselines(held, nfe, lo, hi)
        best = min(base, key=lambda k: base[k] if math.isfinite(base[k]) else math.inf)
        s = held(plan)
        row = {"nfe": nfe, "searched": s, "best_baseline": best, "best_baseline_score": base[best],
               "ratio": s / base[best], "search_score": plan.extra["score"],
               "search_best_baseline": plan.extra["best_baseline_score"], "search_s": cost,
               "evaluations": plan.extra["evaluations"], "baselines": base, "plan": plan.to_json(indent=None)}
        for name in ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm"):
            row[name] = min((v for k, v in base.items() if k.split("/")[0] == name), default=math.nan)
        if with_diffusers:
            d = _diffusers(den, held, nfe)
            row["diffusers_best"], row["diffusers_score"] = (d if d else (None, math.nan))
            row["ratio_diffusers"] = s / row["diffusers_score"] if d else math.nan
        rows.append(row)
    return rows


def budget_curve(den: Any, shape: tuple, nfe: int, budgets: list[int], seeds: list[int], n_search: int,
                 n_held: int) -> list[dict[str, Any]]:
    """Held-out error vs search budget, with and without the predictor (equal evaluations, several seeds)."""
    hi = float(den.sigma_max)
    held = _held(den, shape, n_held, hi, "rms", None)
    rows = []
    for b in budgets:
        for guided in (True, False):
            vals, search_vals = [], []
            for sd in seeds:
                cfg = evolve.Config(budget=b, predictor=guided)
                p = search(den, nfe, shape, float(den.sigma_min), hi, n_samples=n_search, budget=b, seed=sd,
                           config=cfg)
                vals.append(held(p))
                search_vals.append(p.extra["score"])
            rows.append({"budget": b, "predictor": guided, "held_out": sum(vals) / len(vals),
                         "search_set": sum(search_vals) / len(search_vals), "per_seed": vals})
    return rows


def predictor_quality(den: Any, shape: tuple, nfe: int, budget: int, n_search: int) -> dict[str, float]:
    """Kendall tau on held-out plans: fit on the first half of a search's evaluations, rank the second half."""
    state_holder: dict[str, Any] = {}
    search(den, nfe, shape, float(den.sigma_min), float(den.sigma_max), n_samples=n_search, budget=budget,
           seed=0, on_stage=lambda st: state_holder.update(st=st))
    st = state_holder["st"]
    ev = st["evaluated"]
    space = Space(nfe, float(den.sigma_min), float(den.sigma_max))
    from ..solvers.plan import Plan

    feats = [space.features(Plan.from_json(r["plan"])) for r in ev]
    half = len(ev) // 2
    model, _ = P.fit(feats[:half], [r["score"] for r in ev[:half]], seed=0)
    tau = P.kendall_tau(P.predict(model, feats[half:]), [r["score"] for r in ev[half:]])
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(ev), generator=g).tolist()
    tr, te = perm[:half], perm[half:]
    model, _ = P.fit([feats[i] for i in tr], [ev[i]["score"] for i in tr], seed=0)
    tau_rand = P.kendall_tau(P.predict(model, [feats[i] for i in te]), [ev[i]["score"] for i in te])
    explore = [s["tau_explore"] for s in st["stages"] if not math.isnan(s["tau_explore"])]
    return {"tau_later_half": tau, "tau_random_split": tau_rand, "evaluations": len(ev),
            "tau_explore_mean": sum(explore) / len(explore) if explore else math.nan}


def generalisation(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Searched / best-baseline ratio on the search noise vs on the held-out noise, per NFE."""
    return [[r["nfe"], r["search_score"] / r["search_best_baseline"], r["ratio"]] for r in rows]


def digits_rows(nfes: list[int], budget: int, n_search: int, n_held: int, metric: str) -> tuple[list, dict]:
    """The digits teacher: FD-digits (n_held samples, held-out noise) of searched vs hand-made plans, per NFE."""
    from .. import zoo
    from ..metrics import frechet

    den = zoo.load("digits-edm")
    shape = tuple(den.shape)
    rows = table_run(den, shape, nfes, budget, n_search, n_held, "fd", "digits") if metric == "fd" else None
    if rows is None:  # search on RMS vs the teacher's own ODE solution, report FD on held-out noise
        held_fd = _held(den, shape, n_held, float(den.sigma_max), "fd", "digits")
        rows = table_run(den, shape, nfes, budget, n_search, min(n_held, 256), "rms")
        for r in rows:
            from ..solvers.plan import Plan

            r["rms_searched"], r["rms_best_baseline"] = r["searched"], r["best_baseline_score"]
            base = _baselines(held_fd, r["nfe"], float(den.sigma_min), float(den.sigma_max))
            best = min(base, key=lambda k: base[k] if math.isfinite(base[k]) else math.inf)
            r["searched"] = held_fd(Plan.from_json(r["plan"]))
            r.update(best_baseline=best, best_baseline_score=base[best], baselines=base,
                     ratio=r["searched"] / base[best])
            for name in ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm"):
                r[name] = min((v for k, v in base.items() if k.split("/")[0] == name), default=math.nan)
    extra = {"noise_floor": frechet.noise_floor("digits", n_held),
             "teacher_reference_fd": frechet.fd(_held(den, shape, n_held, float(den.sigma_max), "rms", None).ref,
                                                "digits")}
    return rows, extra
