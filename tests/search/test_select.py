"""The final choice (search.select): a searched plan only when the paired bootstrap on validation noise says it
beats the best hand-made plan, else that hand-made plan. Checked on synthetic per-sample errors whose answer is
known, so nothing depends on a search."""

import math

import pytest
import torch

import fewstep as fs
from fewstep.search import select
from fewstep.search.score import Scorer, reduce


class FakeVal:
    """A validation scorer whose per-sample errors are given per plan name (rmse objective)."""

    metric, objective = "rms", "rmse"

    def __init__(self, errors):
        self.errors = errors
        self.ratio_bound = Scorer.ratio_bound.__get__(self)

    def evidence(self, plan):
        return self.errors[plan.name]

    def value(self, ev):
        return math.inf if ev is None else float(reduce(ev, self.objective))


def _record(name, score, hand):
    plan = fs.plans.get("ddim", 3)
    plan = fs.Plan(plan.sigmas, plan.steps, name=name)
    return {"plan": plan.to_json(indent=None), "score": score, "stage": 0 if hand else 1, "name": name}


def _state(*records):
    return {"evaluated": list(records)}


def _errors(n, scale, seed, broken=0):
    g = torch.Generator().manual_seed(seed)
    e = scale * (1 + 0.3 * torch.rand(n, generator=g, dtype=torch.float64))
    e[:broken] = 2.0
    return e


def test_a_clearly_better_searched_plan_is_taken():
    st = _state(_record("s1", 0.1, False), _record("s2", 0.2, False), _record("ddim/logsnr", 0.3, True))
    val = FakeVal({"s1": _errors(512, 0.10, 0), "s2": _errors(512, 0.05, 1), "ddim/logsnr": _errors(512, 0.2, 2)})
    out = select.choose(st, val, k=2)
    assert out["kind"] == "searched" and out["final"][out["pick"]]["name"] == "s2"  # lowest validation score
    assert out["final"][out["pick"]]["bound"] < 1 and out["q"] == pytest.approx(1 - 0.05 / 2)


def test_a_searched_plan_that_breaks_samples_loses_to_the_hand_made_one():
    """Better for 98% of the samples, broken on 2%: the mean prefers it, the rmse objective does not."""
    good = _errors(512, 0.05, 0, broken=10)
    st = _state(_record("s1", 0.1, False), _record("ipndm/karras", 0.3, True))
    val = FakeVal({"s1": good, "ipndm/karras": _errors(512, 0.15, 1)})
    assert good.mean() < val.errors["ipndm/karras"].mean()
    out = select.choose(st, val, k=1)
    assert out["kind"] == "hand-made" and out["final"][out["pick"]]["name"] == "ipndm/karras"


def test_a_marginal_gain_on_few_samples_is_not_enough():
    """2% better in the point estimate, but the two plans' errors are independent noise over only 16 samples: the
    hand-made plan stays."""
    st = _state(_record("s1", 0.1, False), _record("unipc_bh2/logsnr", 0.3, True))
    val = FakeVal({"s1": _errors(16, 0.098, 2), "unipc_bh2/logsnr": _errors(16, 0.1, 0)})
    assert val.value(val.errors["s1"]) < val.value(val.errors["unipc_bh2/logsnr"])
    out = select.choose(st, val, k=1)
    assert out["kind"] == "hand-made" and out["final"][0]["bound"] > 1


def test_the_best_hand_made_plan_on_validation_is_the_comparator():
    st = _state(_record("a/logsnr", 0.1, True), _record("b/karras", 0.2, True), _record("s", 0.3, False))
    val = FakeVal({"a/logsnr": _errors(256, 0.3, 0), "b/karras": _errors(256, 0.1, 1), "s": None})
    out = select.choose(st, val, k=4)
    assert out["kind"] == "hand-made" and out["final"][out["base"]]["name"] == "b/karras"
    assert out["final"][out["pick"]]["name"] == "b/karras"


def test_ratio_bound_is_a_paired_bootstrap_quantile():
    """Errors of b equal to 2x those of a, sample by sample: every resample has ratio 1/2 exactly."""
    a = _errors(64, 0.1, 0)
    val = FakeVal({})
    assert val.ratio_bound(a, 2 * a, 0.99) == pytest.approx(0.5)
    assert val.ratio_bound(None, a, 0.99) == math.inf and val.ratio_bound(a, None, 0.99) == 0.0
