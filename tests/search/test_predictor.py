"""The ranking predictor learns a score that is a known function of the plan's decisions."""

import math
import random

import torch

from fewstep.search import predictor as P
from fewstep.search.space import Space


def _synthetic(plan) -> float:
    """A known score: lower with higher orders and data prediction, higher with a large final sigma."""
    s = sum(st.order for st in plan.steps) + 2.0 * sum(st.prediction == "data" for st in plan.steps)
    return math.exp(-0.3 * s + 3.0 * float(plan.sigmas[-2]))


def test_ranking_loss_decreases_and_heldout_tau_positive():
    rng = random.Random(0)
    space = Space(5)
    plans = [space.random(rng) for _ in range(160)]
    feats, scores = [space.features(p) for p in plans], [_synthetic(p) for p in plans]
    model, losses = P.fit(feats[:100], scores[:100], seed=0, epochs=60)
    assert losses[-1] < 0.5 * losses[0]
    tau = P.kendall_tau(P.predict(model, feats[100:]), scores[100:])
    assert tau > 0.4, tau


def test_ranking_loss_is_zero_for_a_perfect_margin_ordering():
    target = torch.tensor([0.0, 1.0, 2.0])
    assert P.ranking_loss(target * 10, target).item() == 0.0  # ordered with margin >= 0.1
    assert P.ranking_loss(-target, target).item() > 0.1  # reversed


def test_kendall_tau_and_nonfinite_scores():
    assert P.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert P.kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == -1.0
    t = P._targets([1.0, float("inf"), float("nan"), 0.5])
    assert torch.isfinite(t).all() and t[1] > t[0] and t[2] > t[0]  # diverged plans rank last
