"""The multi-stage, predictor-guided evolutionary search of S^3 (Liu et al. 2024, Sec. 4.2, Alg. 2).

Stage 0 evaluates every hand-made plan at the budget plus random plans. Each later stage fits the ranking
predictor on all evaluated plans, proposes many mutations/crossovers of the top-15 (USF `rank_bar`), evaluates
the predictor's best few (plus a random few, so the predictor is checked on plans it did not pick), and repeats.
With `predictor=False` it is the released USF loop (plain evolution). State is a plain dict saved after each
stage, and every stage draws from its own seeded RNG, so a resumed search equals an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import CheckpointError
from ..solvers.plan import Plan
from . import predictor as P
from .space import Space

STATE_VERSION = 2
INIT_TRIES = 50  # random draws per wanted initial plan before stage 0 settles for what exists


@dataclass(frozen=True)
class Config:
    """Search budget and rates; `budget` counts plan evaluations (each costs nfe denoiser calls per sample)."""

    budget: int = 300
    init_random: int = 24
    per_stage: int = 16
    proposals: int = 256
    explore: float = 0.25
    top: int = 15
    p_crossover: float = 0.2
    predictor: bool = True
    epochs: int = 120
    min_fit: int = 16
    final: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.budget, int) or self.budget < 1:
            raise ValueError(f"budget (number of plan evaluations) must be a positive integer, got {self.budget!r}")
        if self.per_stage < 1 or self.proposals < self.per_stage:
            raise ValueError("need per_stage >= 1 and proposals >= per_stage")


def new_state(problem: dict[str, Any], config: Config) -> dict[str, Any]:
    """Empty search state: the problem it belongs to, the config, every evaluation, per-stage statistics."""
    return {"version": STATE_VERSION, "problem": problem, "config": asdict(config), "stage": 0,
            "evaluated": [], "stages": [], "wall_s": 0.0}


def best(state: dict[str, Any]) -> tuple[Plan, float]:
    """The chosen plan and its search-set score: the validation choice (`finalize`) when it covers every
    evaluation, else the lowest search score (first found on ties)."""
    if not state["evaluated"]:
        raise ValueError("the search state holds no evaluated plans yet")
    if state.get("final_at") == len(state["evaluated"]) and "pick" in state:
        e = state["final"][state["pick"]]
    else:
        e = min(state["evaluated"], key=lambda r: _finite(r["score"]))
    return Plan.from_json(e["plan"]), e["score"]


def finalize(state: dict[str, Any], choose: Callable[[dict[str, Any]], dict[str, Any]],
             save: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Make the final choice once per set of evaluations: `choose(state)` (search.select.choose on validation
    noise, so the winner's curse of picking the minimum of many noisy scores cannot pick a plan that only fits
    the search noise) returns {"final", "pick", "kind", ...}, stored in the state and saved."""
    import time

    if state.get("final_at") == len(state["evaluated"]) and "pick" in state:
        return
    t0 = time.perf_counter()
    state.update(choose(state))
    state["final_at"] = len(state["evaluated"])
    state["wall_s"] += time.perf_counter() - t0
    if save is not None:
        save(state)


def _finite(s: float) -> float:
    return s if math.isfinite(s) else math.inf


def _rng(seed: int, stage: int, what: str) -> random.Random:
    return random.Random(f"fewstep-search/{seed}/{stage}/{what}")


def _propose(space: Space, parents: list[Plan], n: int, seen: set[str], rng: random.Random,
             p_crossover: float) -> list[Plan]:
    out: list[Plan] = []
    for _ in range(20 * n):
        if len(out) >= n:
            break
        if len(parents) > 1 and rng.random() < p_crossover:
            a, b = rng.sample(parents, 2)
            child = space.mutate(space.crossover(a, b, rng), rng) if rng.random() < 0.5 else space.crossover(a, b, rng)
        else:
            child = space.mutate(rng.choice(parents), rng)
        key = child.to_json()
        if key not in seen:
            seen.add(key)
            out.append(child)
    return out


def run(space: Space, evaluate: Callable[[list[Plan]], list[float]], config: Config, seed: int,
        state: dict[str, Any], save: Callable[[dict[str, Any]], None] | None = None,
        on_stage: Callable[[dict[str, Any]], None] | None = None,
        sync: Callable[[list[Plan]], list[Plan]] | None = None) -> dict[str, Any]:
    """Continue the search in `state` until `config.budget` plans are evaluated; returns the state. `sync` maps
    each stage's candidates to the ones evaluated (search.dist.broadcast: rank 0's, on every rank)."""
    import time

    sync = sync or (lambda plans: plans)

    def record(plans: list[Plan], scores: list[float], preds: list[float] | None, t0: float,
               tau: float = math.nan, tau_explore: float = math.nan) -> None:
        for i, (p, s) in enumerate(zip(plans, scores, strict=True)):
            state["evaluated"].append({"plan": p.to_json(indent=None), "score": float(s), "stage": state["stage"],
                                       "pred": None if preds is None else float(preds[i]), "name": p.name})
        b = min((_finite(r["score"]) for r in state["evaluated"]), default=math.inf)
        state["stages"].append({"stage": state["stage"], "evaluations": len(state["evaluated"]), "best": b,
                                "tau": tau, "tau_explore": tau_explore})
        state["stage"] += 1
        state["wall_s"] += time.perf_counter() - t0
        if save is not None:
            save(state)
        if on_stage is not None:
            on_stage(state)

    if state["stage"] == 0:
        t0 = time.perf_counter()
        rng = _rng(seed, 0, "init")
        base = space.baselines()
        seen = {p.to_json() for p in base}
        extra: list[Plan] = []
        for _ in range(INIT_TRIES * config.init_random):  # capped: a small NFE has fewer distinct plans
            if len(extra) >= config.init_random:
                break
            p = space.random(rng)
            if p.to_json() not in seen:
                seen.add(p.to_json())
                extra.append(p)
        plans = sync((base + extra)[: max(config.budget, 1)])
        record(plans, evaluate(plans), None, t0)

    while len(state["evaluated"]) < config.budget:
        t0 = time.perf_counter()
        k = state["stage"]
        rng = _rng(seed, k, "propose")
        done = state["evaluated"]
        ranked = sorted(done, key=lambda r: _finite(r["score"]))
        parents = [Plan.from_json(r["plan"]) for r in ranked[: config.top]]
        seen = {Plan.from_json(r["plan"]).to_json() for r in done}
        n_new = min(config.per_stage, config.budget - len(done))
        use_pred = config.predictor and len(done) >= config.min_fit
        cands = _propose(space, parents, config.proposals if use_pred else n_new, seen, rng, config.p_crossover)
        preds = None
        chosen = cands[:n_new]
        n_explore = 0
        if use_pred and cands:
            model, _ = P.fit([space.features(Plan.from_json(r["plan"])) for r in done], [r["score"] for r in done],
                             seed=seed * 7919 + k, epochs=config.epochs)
            pr = P.predict(model, [space.features(c) for c in cands]).tolist()
            order = sorted(range(len(cands)), key=lambda i: pr[i])
            n_explore = min(round(config.explore * n_new), max(len(cands) - n_new, 0))
            picked = order[: n_new - n_explore]
            rest = order[n_new - n_explore:]
            picked += rng.sample(rest, n_explore)
            chosen = [cands[i] for i in picked]
            preds = [pr[i] for i in picked]
        mine, chosen = chosen, sync(chosen)
        if not chosen:  # the space is exhausted
            break
        if preds is not None and chosen != mine:  # another rank's candidates: its predictions are not ours
            preds = [math.nan] * len(chosen)
        scores = evaluate(chosen)
        tau = P.kendall_tau(preds, scores) if preds is not None else math.nan
        tau_x = P.kendall_tau(preds[-n_explore:], scores[-n_explore:]) if preds is not None and n_explore > 2 \
            else math.nan
        record(chosen, scores, preds, t0, tau, tau_x)
    return state


def save_state(path: str | os.PathLike, state: dict[str, Any], ref: torch.Tensor | None = None) -> None:
    """Atomically write the state (and the cached reference samples) with fewstep.io.atomic_torch_save."""
    from ..io import atomic_torch_save

    atomic_torch_save({"state": state, "ref": ref}, path)


def load_state(path: str | os.PathLike, problem: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Read a saved search; refuse one that belongs to a different problem (model, nfe, noise, metric)."""
    try:
        blob = torch.load(path, weights_only=True)
        state = blob["state"]
    except Exception as e:  # truncated or foreign file: torch raises OSError/RuntimeError/UnpicklingError
        raise CheckpointError(f"{path} is not a readable search state, it is damaged ({type(e).__name__}); delete "
                              "it or run without --resume to start afresh") from e
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: search state version {state.get('version')!r} is not {STATE_VERSION}; "
                         "delete it to start afresh")
    if state["problem"] != problem:
        diff = {k: (state["problem"].get(k), v) for k, v in problem.items() if state["problem"].get(k) != v}
        raise ValueError(f"{path} is the state of a different search (saved vs now: {diff}); use another "
                         "--state path or delete it")
    return state, blob.get("ref")
