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
from ..guidance import CFG
from ..solvers.plan import MAX_NFE, Plan
from . import dist, evolve, select
from .score import METRICS, OBJECTIVES, Scorer
from .space import Space

DEFAULT_OBJECTIVE = "rmse"


def default_budget(nfe: int) -> int:
    """Plan evaluations when budget=None: all hand-made plans, 24 random ones and ~5 guided stages (a few minutes
    on 2 cores for the digits teacher at 128 samples)."""
    return 160 if nfe <= 6 else 128


def data_mean(den: Any, x_T: torch.Tensor, sigma_max: float, cond: Any = None) -> torch.Tensor:
    """E[x0] for the analytical first step (USF 'average_x0'): exact for a mixture, else mean_b D(x_T, sigma_max)."""
    from ..analytic import ClassMixture, GaussianMixture

    if isinstance(den, GaussianMixture) and (cond is None or not isinstance(den, ClassMixture)):
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
           on_stage: Callable[[dict[str, Any]], None] | None = None, model_id: str | None = None,
           guidance: float | None = None, objective: str = DEFAULT_OBJECTIVE, n_val: int | None = None) -> Plan:
    """S^3: evolve USF plans with exactly `nfe` evaluations, scored on `n_samples` fixed noises (seed), guided by
    a ranking predictor; the final pick is made on `n_val` validation noises (search.select): a searched plan only
    if it beats the best hand-made plan there (paired bootstrap), else that hand-made plan (plan.extra["chosen"]).

    budget = plan evaluations (None: `default_budget`). objective: how "rms" reduces per-sample errors (mean,
    rmse, cvar). cond: None, a class label or labels (sample i gets labels[i % len]), or any condition passed as
    is; guidance: classifier-free guidance scale (D_u + g (D_c - D_u), 1 = none). state_path: resumable state,
    written after every stage. Under torch.distributed the evaluations are spread over the ranks (search.dist)."""
    shape = _check(den, nfe, shape, float(sigma_min), float(sigma_max), metric)
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ValueError(f"budget must be a positive number of plan evaluations, got {budget!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    n_val = default_n_val(n_samples) if n_val is None else n_val
    if not isinstance(n_val, int) or n_val < 2:
        raise ValueError(f"n_val (validation noises) must be an integer >= 2, got {n_val!r}")
    den = _guided(den, cond, guidance)
    if metric == "fd" and dataset is None:
        from ..zoo.lookup import dataset_of

        dataset = dataset_of(den.den if isinstance(den, CFG) else den)  # config["data"]: a name or {"name": ...}
    budget = budget if budget is not None else default_budget(nfe)
    cfg = config or evolve.Config(budget=budget)
    if cfg.budget != budget:
        cfg = evolve.Config(**{**cfg.__dict__, "budget": budget})
    problem = {"model": model_id or type(den).__name__, "nfe": nfe, "shape": list(shape),
               "sigma_min": float(sigma_min), "sigma_max": float(sigma_max), "n_samples": n_samples, "seed": seed,
               "metric": metric, "objective": objective, "n_val": n_val, "cond": _describe(cond),
               "guidance": None if guidance is None else float(guidance)}
    distributed = dist.world()[1] > 1
    main = dist.is_main()
    state, ref = None, None
    if state_path is not None:
        state, ref = dist.leader(lambda: evolve.load_state(state_path, problem) if Path(state_path).is_file()
                                 else (None, None))
    device = _device(den)
    t0 = time.perf_counter()
    scorer = Scorer(den, shape, n_samples, seed, float(sigma_max), metric, _labels(cond, n_samples), ref=ref,
                    dataset=dataset, device=device, objective=objective, distributed=distributed)
    ref_s = time.perf_counter() - t0
    space = Space(nfe, float(sigma_min), float(sigma_max),
                  afs_mean=data_mean(den, scorer.x_T, float(sigma_max), scorer.cond).to(torch.float64))
    if state is None:
        state = evolve.new_state(problem, cfg)
        state["reference_s"] = ref_s
    save = (lambda st: evolve.save_state(state_path, st, scorer.cached_ref())) \
        if state_path is not None and main else None
    display = None
    if progress and main:
        from .progress import Display

        display = Display(budget, nfe)
    callbacks = [c for c in (on_stage, display) if c is not None]

    def stage(st: dict[str, Any]) -> None:
        for c in callbacks:
            c(st)

    try:
        evolve.run(space, lambda plans: scorer.evaluate(plans, workers), cfg, seed, state, save, stage,
                   sync=dist.broadcast if distributed else None)
        if cfg.final > 0 and not (state.get("final_at") == len(state["evaluated"]) and "pick" in state):
            val = Scorer(den, shape, n_val, _val_seed(seed), float(sigma_max), metric, _labels(cond, n_val),
                         dataset=dataset, device=device, objective=objective, distributed=distributed)
            n_boot = 2000 if metric == "rms" else 400
            evolve.finalize(state, lambda st: select.choose(st, val, cfg.final, n_boot=n_boot, seed=seed,
                                                            distributed=distributed), save)
    finally:
        if display is not None:
            display.close()
    return _result(state, nfe, metric, objective, seed, budget, n_samples, n_val, guidance)


def _result(state: dict[str, Any], nfe: int, metric: str, objective: str, seed: int, budget: int,
            n_samples: int, n_val: int, guidance: float | None) -> Plan:
    """The returned plan: the state's choice, named searched-nfe<N> or by its hand-made name, with plan.extra."""
    final = state.get("final") if state.get("final_at") == len(state["evaluated"]) and "pick" in state else None
    if final:
        rec, base = final[state["pick"]], final[state["base"]] if state["base"] is not None else None
        tested = [r["bound"] for r in final if r["bound"] is not None]
    else:
        rec = min(state["evaluated"], key=lambda r: _key(r["score"]))
        base = min((r for r in state["evaluated"] if select.is_hand_made(r)), key=lambda r: _key(r["score"]),
                   default=None)
        tested = []
    plan, score = Plan.from_json(rec["plan"]), rec["score"]
    chosen = "hand-made" if select.is_hand_made(rec) else "searched"
    name = rec["name"] if chosen == "hand-made" else f"searched-nfe{nfe}"
    plan = Plan(plan.sigmas, plan.steps, afs=plan.afs, afs_mean=plan.afs_mean, name=name,
                extra={"score": score, "metric": metric, "objective": objective if metric == "rms" else None,
                       "chosen": chosen, "evaluations": len(state["evaluated"]),
                       "wall_s": state["wall_s"] + state.get("reference_s", 0.0), "seed": seed, "budget": budget,
                       "n_samples": n_samples, "n_val": n_val, "guidance": guidance,
                       "best_baseline": base["name"] if base else None,
                       "best_baseline_score": base["score"] if base else math.nan,
                       "best_baseline_val": base.get("val", math.nan) if base else math.nan,
                       "val_score": rec.get("val", math.nan),
                       "val_ratio_bound": rec["bound"] if rec.get("bound") is not None else
                       (min(tested) if tested else math.nan),
                       "confidence": state.get("q", math.nan) if final else math.nan,
                       "tau": [s["tau"] for s in state["stages"]]})
    return plan


def default_n_val(n_samples: int) -> int:
    """Validation noises when n_val=None: 512, or 2 n_samples for a larger search (power for the bootstrap)."""
    return max(512, 2 * n_samples)


def _guided(den: Any, cond: Any, guidance: float | None) -> Any:
    """The denoiser the search scores: `den`, or under classifier-free guidance CFG(den, g) (null cond = None)."""
    if guidance is None or float(guidance) == 1.0:
        return den
    g = float(guidance)
    if not math.isfinite(g):
        raise ValueError(f"guidance must be a finite scale (1 = none), got {guidance}")
    if cond is None:
        raise ValueError("guidance pushes samples towards their condition; give cond (a class label or labels)")
    return CFG(den, g)


def _is_labels(cond: Any) -> bool:
    if isinstance(cond, bool):
        return False
    if isinstance(cond, int):
        return True
    if isinstance(cond, (list, tuple)) and cond and all(isinstance(c, int) and not isinstance(c, bool)
                                                        for c in cond):
        return True
    return torch.is_tensor(cond) and cond.ndim == 1 and len(cond) > 0 and not cond.is_floating_point() \
        and not cond.is_complex()


def _labels(cond: Any, n: int) -> Any:
    """Per-sample class labels [n] (long) from an int or labels cycled over the samples; other conds as given."""
    if not _is_labels(cond):
        return cond
    y = torch.as_tensor([cond] if isinstance(cond, int) else cond, dtype=torch.long).cpu()
    return y[torch.arange(n) % len(y)]


def _describe(cond: Any) -> Any:
    """The cond as it identifies a search in its state file: labels as a list, else its type (and shape)."""
    if cond is None:
        return None
    if _is_labels(cond):
        return torch.as_tensor([cond] if isinstance(cond, int) else cond).tolist()
    return f"{type(cond).__name__}{list(cond.shape) if torch.is_tensor(cond) else ''}"


def _device(den: Any) -> torch.device:
    """Where the denoiser's parameters live (the noise is put there), CPU for parameter-free denoisers."""
    inner = den.den if isinstance(den, CFG) else den
    if isinstance(inner, torch.nn.Module):
        p = next(iter(inner.parameters()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


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
