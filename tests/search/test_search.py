"""S^3 end to end on the analytic oracle. Nothing here depends on the exact path of a search (which moves with the
float rounding of a CPU): the tests check the decision rule on the plan returned, statistics over seeds with
margins measured here, and exact resumption on one machine."""

import math

import pytest
import torch

import fewstep as fs
from fewstep.search.api import _val_seed, default_n_val
from fewstep.search.score import Scorer, reduce, reference
from fewstep.search.space import Space


@pytest.fixture(scope="module")
def mixture():
    return fs.analytic.toy_mixture(dim=6, k=5, seed=3)


SEEDS = range(5)
N_VAL = 256


@pytest.fixture(scope="module")
def searches(mixture):
    """Five tiny NFE-4 searches (seeds 0-4) with the mean objective (the one this mixture's plans differ in most),
    and two with the default (rmse) objective. (Module fixtures run before the autouse one-thread fixture.)"""
    torch.set_num_threads(1)
    out = {("mean", s): fs.search.search(mixture, 4, (6,), n_samples=64, budget=100, seed=s, objective="mean",
                                         n_val=N_VAL) for s in SEEDS}
    out.update({("rmse", s): fs.search.search(mixture, 4, (6,), n_samples=64, budget=100, seed=s, n_val=N_VAL)
                for s in range(2)})
    return out


def _hand_made(name):
    return next(p for p in Space(4).baselines() if p.name == name)


def test_the_plan_returned_is_the_validation_decision(mixture, searches):
    """Exact on any CPU, whatever path each search took: re-scored on the validation noise, a searched plan beats
    the hand-made comparator under the paired bootstrap at the recorded confidence; otherwise the plan returned is
    that hand-made plan, named as such."""
    for (obj, seed), plan in searches.items():
        assert plan.nfe <= 4 and plan.extra["objective"] == obj and plan.extra["n_val"] == N_VAL
        val = Scorer(mixture, (6,), N_VAL, _val_seed(seed), objective=obj)
        base = _hand_made(plan.extra["best_baseline"])
        ev_plan, ev_base = val.evidence(plan), val.evidence(base)
        assert val.value(ev_plan) == pytest.approx(plan.extra["val_score"], rel=1e-9)
        assert val.value(ev_base) == pytest.approx(plan.extra["best_baseline_val"], rel=1e-9)
        if plan.extra["chosen"] == "searched":
            assert plan.name == "searched-nfe4"
            bound = val.ratio_bound(ev_plan, ev_base, plan.extra["confidence"], seed=seed)
            assert bound == pytest.approx(plan.extra["val_ratio_bound"]) and bound < 1.0
        else:
            assert plan.extra["chosen"] == "hand-made" and plan.name == base.name
            assert torch.equal(plan.sigmas, base.sigmas) and plan.steps == base.steps and plan.afs == base.afs


def test_no_search_is_worse_than_its_hand_made_comparator_on_heldout_noise(mixture, searches):
    """On 1024 noises no search saw: no returned plan is significantly worse than the hand-made plan it was
    tested against (the 1% paired-bootstrap quantile of the ratio stays <= 1)."""
    for (obj, _), plan in searches.items():
        held = Scorer(mixture, (6,), 1024, seed=12345, objective=obj)
        lo = held.ratio_bound(held.evidence(plan), held.evidence(_hand_made(plan.extra["best_baseline"])), 0.01)
        assert lo <= 1.0, (obj, plan.extra)


def test_searches_beat_every_hand_made_plan_on_heldout_noise(mixture, searches):
    """Statistics over five seeds, with a margin: most searches (mean objective) return a searched plan whose
    held-out mean error is below 0.95x that of the hand-made plan that is best on that very noise."""
    held = Scorer(mixture, (6,), 1024, seed=12345)
    best_base = min(held(p) for p in Space(4).baselines())
    ratios = [held(searches["mean", s]) / best_base for s in SEEDS]
    chosen = [searches["mean", s].extra["chosen"] for s in SEEDS]
    wins = sum(r < 0.95 and c == "searched" for r, c in zip(ratios, chosen, strict=True))
    assert wins >= 3, ratios


def test_tail_objectives_see_broken_samples():
    """rmse and mean + CVaR_0.95 (mean of the worst 5%) against closed forms; the mean barely moves when 2% of the
    samples break, the tail objectives do."""
    good = torch.full((100,), 0.1, dtype=torch.float64)
    broken = good.clone()
    broken[:2] = 2.0
    assert reduce(good, "rmse").item() == pytest.approx(0.1)
    assert reduce(broken, "mean").item() == pytest.approx(0.138)
    assert reduce(broken, "rmse").item() == pytest.approx(math.sqrt((2 * 4.0 + 98 * 0.01) / 100))
    assert reduce(broken, "cvar").item() == pytest.approx(0.138 + (2 * 2.0 + 3 * 0.1) / 5)
    assert reduce(torch.tensor([0.1, math.inf]), "rmse").item() == math.inf
    assert reduce(torch.stack([good, broken]), "cvar").shape == (2,)
    assert default_n_val(128) == 512 and default_n_val(1024) == 2048


class _Kill(Exception):
    pass


def test_resume_equals_uninterrupted(mixture, tmp_path):
    kw = dict(n_samples=16, budget=96, seed=1, n_val=64)  # stage 0 (hand-made + 24 random) + 2 stages < 96
    full = fs.search.search(mixture, 3, (6,), **kw)
    path = tmp_path / "state.pt"
    calls = []

    def kill_after_two(state):
        calls.append(state["stage"])
        if len(calls) == 2:
            raise _Kill

    with pytest.raises(_Kill):
        fs.search.search(mixture, 3, (6,), state_path=path, on_stage=kill_after_two, **kw)
    saved = torch.load(path, weights_only=True)["state"]
    assert 0 < len(saved["evaluated"]) < kw["budget"]
    resumed = fs.search.search(mixture, 3, (6,), state_path=path, **kw)
    assert resumed == full and resumed.name == full.name
    for k in ("score", "val_score", "chosen", "best_baseline", "evaluations"):
        assert resumed.extra[k] == full.extra[k], k
    again = fs.search.search(mixture, 3, (6,), state_path=path, **kw)  # a finished state: the same choice
    assert again == full and again.extra["val_score"] == full.extra["val_score"]


def test_a_state_of_another_objective_is_refused(mixture, tmp_path):
    path = tmp_path / "state.pt"
    fs.search.search(mixture, 2, (6,), n_samples=8, budget=30, n_val=16, state_path=path)
    with pytest.raises(ValueError, match="objective"):
        fs.search.search(mixture, 2, (6,), n_samples=8, budget=30, n_val=16, state_path=path, objective="cvar")


def test_reference_plan_agrees_with_ode_reference(mixture):
    x_T = fs.seed.noise(8, 0, (6,), 80.0).double()
    ode = reference(mixture, x_T, 80.0, kind="ode")
    plan = reference(mixture, x_T, 80.0, kind="plan")
    assert (plan - ode).pow(2).mean().sqrt() < 1e-3 * ode.pow(2).mean().sqrt()


@pytest.mark.parametrize("kw, err, match", [
    (dict(nfe=0), ValueError, "nfe"),
    (dict(nfe=2.5), ValueError, "nfe"),
    (dict(metric="fid"), ValueError, "metric"),
    (dict(objective="max"), ValueError, "objective"),
    (dict(n_val=1), ValueError, "n_val"),
    (dict(budget=0), ValueError, "budget"),
    (dict(sigma_min=1e-4), ValueError, "range"),
    (dict(metric="fd"), ValueError, "data set"),
    (dict(guidance=2.0), ValueError, "cond"),
    (dict(guidance=float("nan"), cond=1), ValueError, "finite"),
])
def test_bad_input_clear_errors(mixture, kw, err, match):
    args = dict(nfe=3, shape=(6,), n_samples=4, budget=5) | kw
    with pytest.raises(err, match=match):
        fs.search.search(mixture, **args)


def test_shape_mismatch_is_a_clear_error(mixture):
    class WithShape:
        sigma_min, sigma_max, shape = 0.002, 80.0, (6,)

        def __call__(self, x, sigma, cond=None):
            return mixture(x, sigma)

    with pytest.raises(ValueError, match="shape"):
        fs.search.search(WithShape(), 3, (1, 8, 8), n_samples=4, budget=5)
    with pytest.raises(TypeError, match="shape"):
        fs.search.search(WithShape(), 3, 6, n_samples=4, budget=5)


def test_diverging_plans_score_inf_not_crash():
    class Blowup:
        sigma_min, sigma_max = 0.002, 80.0

        def __call__(self, x, sigma, cond=None):
            return x * float("nan")

    scorer = Scorer(Blowup(), (3,), n_samples=4, seed=0, ref=torch.zeros(4, 3))
    assert scorer(Space(3).baselines()[0]) == math.inf
    assert scorer.evidence(Space(3).baselines()[0]) is None
