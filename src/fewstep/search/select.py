"""The final choice of a search, made on validation noise the search never scored: a searched plan is returned only
when a paired bootstrap over the validation samples (Efron & Tibshirani 1993, Ch. 13 and 16) says it beats the best
hand-made plan; otherwise the best hand-made plan is returned, and the result says so.

The test is one-sided at level alpha with a Bonferroni correction over the k searched finalists (the candidate
with the lowest validation score among those that pass is taken), so the chance of returning a searched plan that
is not better than the hand-made comparator is at most alpha, whatever the search did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..solvers.plan import Plan
from . import dist

ALPHA = 0.05
N_BASE = 3  # hand-made finalists: the best by search score, re-scored on validation noise


def is_hand_made(r: dict[str, Any]) -> bool:
    """An evaluation record of a hand-made plan (stage 0, named constructor/grid)."""
    return r["stage"] == 0 and "/" in (r.get("name") or "")


def _finite(s: float) -> float:
    return s if math.isfinite(s) else math.inf


def choose(state: dict[str, Any], val: Any, k: int, alpha: float = ALPHA, n_base: int = N_BASE,
           n_boot: int = 2000, seed: int = 0, distributed: bool = False) -> dict[str, Any]:
    """Re-score the k best searched plans and the n_base best hand-made plans on `val` (a Scorer on the validation
    noise), then pick (see the module docstring). Returns {"final": records with "val" (and "bound"), "pick":
    index into final, "kind": "searched" | "hand-made", "base": index of the comparator, "q": 1 - alpha / k}."""
    ranked = sorted(state["evaluated"], key=lambda r: _finite(r["score"]))
    cands = [r for r in ranked if not is_hand_made(r)][:k]
    hand = [r for r in ranked if is_hand_made(r)][:n_base]
    pool = cands + hand
    plans = [Plan.from_json(r["plan"]) for r in pool]
    run: Callable = dist.spread if distributed else (lambda f, xs: (xs, [f(x) for x in xs]))
    _, evs = run(val.evidence, plans)
    vals = [val.value(e) for e in evs]
    n = len(cands)
    base = n + min(range(len(hand)), key=lambda i: _finite(vals[n + i])) if hand else None
    q = 1 - alpha / max(n, 1)
    bounds: list[float | None] = [None] * len(pool)
    pick = base
    for i in sorted(range(n), key=lambda i: _finite(vals[i])):  # the first that passes has the lowest score
        if base is not None and not _finite(vals[i]) < _finite(vals[base]):
            break  # no better point estimate: cannot pass
        bounds[i] = 0.0 if base is None else val.ratio_bound(evs[i], evs[base], q, n_boot, seed)
        if bounds[i] < 1.0:
            pick = i
            break
    if pick is None:  # neither searched nor hand-made plans (budget 0): the best evaluated one
        pick = 0
    final = [{**r, "val": float(v), "bound": b} for r, v, b in zip(pool, vals, bounds, strict=True)]
    return {"final": final, "pick": pick, "kind": "searched" if pick < n else "hand-made", "base": base, "q": q}
