"""`fewstep bench search`: S^3 searched plans vs every hand-made plan, on noise the search never saw.

(a) analytic mixtures (search_mixtures.py): mean and p99 RMS error vs the exact PF-ODE solution, against diffusers'
schedulers; (b) the digits teacher: FD-digits, NFE 3-10, with the search cost and the RMS tail vs the 200-step
ODE; (c) result vs search budget, and predictor-guided vs plain evolution at equal evaluations; (d)
generalisation: search-noise vs held-out-noise ratios. Liu et al. (2024), S^3, Sec. 5.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from .. import zoo
from ..analytic import toy_mixture
from ..io import save_grid
from ..metrics import frechet
from ..search import evolve
from ..search import predictor as P
from ..search.api import read_plan_file, search
from ..search.score import Scorer
from ..search.space import Space
from ..seed import HELD_OUT_SEED as HELD_SEED  # held-out noise: never used by a search
from ..solvers.plan import Plan
from ..zoo.lookup import searched_plan_path
from .common import RESULTS_DIR


def mixture() -> Any:
    """The benchmark's analytic model: 8 Gaussians in 16 dimensions (fewstep.analytic.toy_mixture)."""
    return toy_mixture(dim=16, k=8, spread=2.0, std=0.3, seed=0)


def budget_curve(den: Any, shape: tuple, nfe: int, budgets: list[int], seeds: list[int], n_search: int,
                 n_held: int) -> list[dict[str, Any]]:
    """Held-out error vs search budget, with and without the predictor (equal evaluations, several seeds)."""
    hi = float(den.sigma_max)
    held = Scorer(den, shape, n_held, HELD_SEED, hi)
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
    return state_tau(state_holder["st"], Space(nfe, float(den.sigma_min), float(den.sigma_max)))


def state_tau(st: dict[str, Any], space: Space) -> dict[str, float]:
    """Predictor ranking quality on a finished search state: fit on the first half of its evaluations and rank
    the second half, the same on a random split, and the mean tau on the random exploration picks of each stage."""
    ev = st["evaluated"]
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


DIGITS = "digits-edm"
FAMILIES = ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "heun", "ipndm")


def _samples(held: Scorer, plan: Any) -> Tensor | None:
    """One plan's samples from the held-out noise, or None when the plan diverges."""
    try:
        return held.run(plan)
    except (FloatingPointError, RuntimeError, torch.linalg.LinAlgError):
        return None


def _scores(held: Scorer, x: Tensor | None) -> tuple[float, float]:
    """FD-digits and RMS-to-reference of samples from the held-out noise (inf for a diverged plan)."""
    if x is None:
        return math.inf, math.inf
    return held.score(x, "fd"), held.score(x, "rms")


def _tail(held: Scorer, x: Tensor | None) -> tuple[float, float]:
    """99th percentile and maximum of the per-sample RMS distances to the reference (inf for a diverged plan)."""
    if x is None or not torch.isfinite(x).all():
        return math.inf, math.inf
    e = held.errors(x)
    return float(torch.quantile(e, 0.99)), float(e.max())


def _fd_rms(held: Scorer, plan: Any) -> tuple[float, float]:
    """FD-digits and RMS-to-reference of one plan's samples from the held-out noise (one sampling pass)."""
    return _scores(held, _samples(held, plan))


def _ratio_interval(xa: Tensor | None, xb: Tensor | None) -> list[float]:
    """90% paired-bootstrap interval of FD(a) / FD(b) for two plans' samples from the same noise (metrics.frechet)."""
    if xa is None or xb is None or not (torch.isfinite(xa).all() and torch.isfinite(xb).all()):
        return [math.nan, math.nan]
    fa, fb = (frechet.features(x, "digits") for x in (xa, xb))
    return list(frechet.paired_bootstrap_ratio(fa, fb, frechet.reference_stats("digits")))


def _best(scores: dict[str, float]) -> str:
    return min(scores, key=lambda k: _finite(scores[k]))


def digits_plan(nfe: int, research: bool = False, budget: int = 120, n_search: int = 32,
                metric: str = "rms") -> tuple[Any, dict[str, Any]]:
    """The searched digits-edm plan at this NFE and its search metadata: the shipped file (zoo/files/plans), or,
    with research=True, a fresh search (seed 0) whose cost is measured here."""
    if not research:
        return read_plan_file(searched_plan_path(DIGITS, nfe))
    den = zoo.load(DIGITS)
    t0 = time.perf_counter()
    plan = search(den, nfe, tuple(den.shape), float(den.sigma_min), float(den.sigma_max), n_samples=n_search,
                  budget=budget, seed=0, metric=metric, dataset="digits", model_id=DIGITS)
    return plan, {**plan.extra, "wall_s": time.perf_counter() - t0, "command": "(bench --research)"}


def save_grids(held: Scorer, rows: list[dict[str, Any]], nfes: list[int], n: int = 32) -> list[str]:
    """PNG per NFE (bench-results/search-digits-nfe<N>.png): the first n held-out noises through the searched plan
    (top), the best hand-made plan (middle) and the teacher's 200-step ODE (bottom), white rows between."""
    out = []
    n = min(n, held.x_T.shape[0])
    sub = Scorer(held.den, held.shape, n, HELD_SEED, held.sigma_max, "rms", ref=held.ref[:n])
    gap = torch.ones(8, *held.shape)
    for r in rows:
        if r["nfe"] not in nfes:
            continue
        hand = next(p for p in Space(r["nfe"], float(held.den.sigma_min), held.sigma_max).baselines()
                    if p.name == r["best_baseline"])
        x = torch.cat([sub.run(Plan.from_json(r["plan"])), gap, sub.run(hand), gap, sub.ref])
        out.append(str(save_grid(x, RESULTS_DIR / f"search-digits-nfe{r['nfe']}.png", nrow=8)))
    return out


def digits_rows(nfes: list[int], n_held: int = 500, screen: int = 100, keep: int = 8, research: bool = False,
                budget: int = 120, n_search: int = 32, metric: str = "rms",
                grids: tuple[int, ...] = ()) -> tuple[list, dict]:
    """FD-digits (n_held samples, held-out noise, cond=None) of the searched plan vs the hand-made plans per NFE.

    Every hand-made plan is scored on the first `screen` held-out noises; the `keep` best of them are scored on
    all n_held (screen=0: every plan on all n_held). RMS vs the teacher's 200-step ODE solution rides along."""
    den = zoo.load(DIGITS)
    shape, lo, hi = tuple(den.shape), float(den.sigma_min), float(den.sigma_max)
    held = Scorer(den, shape, n_held, HELD_SEED, hi, "fd", dataset="digits")
    pre = Scorer(den, shape, screen, HELD_SEED, hi, "fd", dataset="digits") if 0 < screen < n_held else None
    rows = []
    for nfe in nfes:
        plan, meta = digits_plan(nfe, research, budget, n_search, metric)
        t0 = time.perf_counter()
        base_plans = Space(nfe, lo, hi).baselines()
        screened = {p.name: pre(p) for p in base_plans} if pre is not None else {}
        chosen = sorted(screened, key=lambda k: _finite(screened[k]))[:keep]
        base, base_rms, base_p99, xs = {}, {}, {}, {}
        for p in base_plans:
            if pre is None or p.name in chosen:
                xs[p.name] = _samples(held, p)
                base[p.name], base_rms[p.name] = _scores(held, xs[p.name])
                base_p99[p.name] = _tail(held, xs[p.name])[0]
        x_plan = _samples(held, plan)
        fd, r = _scores(held, x_plan)
        p99, worst = _tail(held, x_plan)
        best, best_rms = _best(base), _best(base_rms)
        ci = _ratio_interval(x_plan, xs[best])
        row = {"nfe": nfe, "searched": fd, "best_baseline": best, "best_baseline_score": base[best],
               "ratio": fd / base[best], "ratio_90": ci, "searched_rms": r, "searched_rms_p99": p99,
               "searched_rms_max": worst, "best_rms_baseline": best_rms,
               "best_rms_baseline_score": base_rms[best_rms], "best_rms_baseline_p99": base_p99[best_rms],
               "baselines_rms_p99": base_p99, "chosen": meta.get("chosen", "searched"),
               "search_metric": meta.get("metric"),
               "search_n_samples": meta.get("n_samples"), "search_budget": meta.get("budget"),
               "search_score": meta.get("score", math.nan), "search_best_baseline_name": meta.get("best_baseline"),
               "search_best_baseline": meta.get("best_baseline_score", math.nan),
               "search_val_score": meta.get("val_score", math.nan), "search_s": meta.get("wall_s", math.nan),
               "evaluations": meta.get("evaluations"), "command": meta.get("command"), "baselines": base,
               "baselines_rms": base_rms, "screened": screened, "eval_s": time.perf_counter() - t0,
               "plan": plan.to_json(indent=None)}
        for name in FAMILIES:
            row[name] = min((v for k, v in base.items() if k.split("/")[0] == name), default=math.nan)
        rows.append(row)
    n_floor = min(n_held, frechet.max_floor_n("digits"))
    extra = {"noise_floor": frechet.noise_floor("digits", n_floor), "noise_floor_n": n_floor, "n_held": n_held,
             "screen": screen, "keep": keep,
             "teacher_reference_fd": frechet.fd(held.ref, "digits"), "plots": save_grids(held, rows, list(grids))}
    return rows, extra


def digits_curve(nfe: int, checkpoints: list[int], n_search: int, n_held: int = 500,
                 metric: str = "rms") -> dict[str, Any]:
    """Result vs search budget on the digits teacher at one NFE, predictor-guided vs plain evolution (seed 0):
    the best plan after k evaluations (anytime, by search-set score) of one search of max(checkpoints), scored
    on held-out FD; plus the evaluations plain evolution needs to reach the guided search's best search score,
    and the guided search's predictor ranking quality (state_tau)."""
    den = zoo.load(DIGITS)
    shape, lo, hi = tuple(den.shape), float(den.sigma_min), float(den.sigma_max)
    held = Scorer(den, shape, n_held, HELD_SEED, hi, "fd", dataset="digits")
    out: dict[str, Any] = {"nfe": nfe, "n_search": n_search, "metric": metric, "rows": []}
    curves, holder = {}, {}
    for guided in (True, False):
        t0 = time.perf_counter()
        search(den, nfe, shape, lo, hi, n_samples=n_search, budget=max(checkpoints), seed=0, metric=metric,
               dataset="digits", config=evolve.Config(budget=max(checkpoints), predictor=guided, final=0),
               on_stage=lambda st: holder.update(st=st))
        ev = holder["st"]["evaluated"]
        curves[guided] = [min(_finite(r["score"]) for r in ev[:k + 1]) for k in range(len(ev))]
        for k in checkpoints:
            r = min(ev[:k], key=lambda e: _finite(e["score"]))
            out["rows"].append({"budget": k, "predictor": guided, "search_set": r["score"],
                                "held_out": _fd_rms(held, Plan.from_json(r["plan"]))[0]})
        out["wall_s_" + ("guided" if guided else "plain")] = time.perf_counter() - t0
        if guided:
            out["tau"] = state_tau(holder["st"], Space(nfe, lo, hi))
            out["stage_tau"] = [s["tau"] for s in holder["st"]["stages"]]
    target = curves[True][-1]
    need = next((k + 1 for k, v in enumerate(curves[False]) if v <= target), None)
    out.update(best_so_far_guided=curves[True], best_so_far_plain=curves[False], plain_evals_to_match=need)
    return out


def _finite(s: float) -> float:
    return s if math.isfinite(s) else math.inf
