"""Plan data: JSON round trip, validation messages, exact NFE accounting, robustness at tiny NFE, batch independence."""

from __future__ import annotations

import json

import pytest
import torch

import fewstep as fs
from fewstep.errors import PlanError
from fewstep.solvers.plan import Plan, Step

NAMES = fs.plans.names()


@pytest.fixture(scope="module")
def den():
    return fs.analytic.toy_mixture(dim=2, k=8)


class Counting:
    def __init__(self, den):
        self.den, self.calls = den, 0
        self.sigma_min, self.sigma_max = den.sigma_min, den.sigma_max

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.den(x, sigma, cond)


def test_defaults_work():
    plan = fs.plans.get("ddim", nfe=5)
    assert plan.nfe == 5 and plan.sigmas.dtype == torch.float64
    assert plan.sigmas[0] == 80.0 and plan.sigmas[-1] == 0.0
    assert isinstance(plan, fs.Plan)


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="dpm_solver_pp_2m"):
        fs.plans.get("dpm_solver_9000")


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_nfe_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="nfe"):
        fs.plans.get("euler", nfe=bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 5, 7, 10, 16])
def test_nfe_is_exact_and_counted(den, name, nfe):
    plan = fs.plans.get(name, nfe=nfe)
    assert plan.nfe == nfe
    counter = Counting(den)
    fs.sample(counter, den.sample(4, torch.Generator().manual_seed(0)) * 0 + 80.0, plan)
    assert counter.calls == nfe


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("nfe", [1, 2, 3])
@pytest.mark.parametrize("grid", ["logsnr", "karras", "uniform_t", "quadratic_t"])
def test_no_nan_at_tiny_nfe(den, name, nfe, grid):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(nfe)) * 80.0
    out = fs.sample(den, x, fs.plans.get(name, nfe=nfe, grid=grid))
    assert torch.isfinite(out).all()  # noise-prediction 2S over h ~ 10 is inaccurate, but must stay finite


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trip(name):
    plan = fs.plans.get(name, nfe=7, grid="karras")
    back = Plan.from_json(plan.to_json())
    assert back == plan and back.nfe == plan.nfe
    assert torch.equal(back.sigmas, plan.sigmas)


def test_hand_written_json_with_defaults_runs(den):
    text = json.dumps({"version": 1, "sigmas": [80, 5, 0.3, 0.002, 0], "defaults": {"prediction": "data"},
                       "steps": [{}, {"order": 2, "relaxation": "bh2", "corrector": "unic"}, {"order": 2}, {}]})
    plan = Plan.from_json(text)
    assert plan.nfe == 4 and plan.steps[1].corrector == "unic"
    assert torch.isfinite(fs.sample(den, torch.randn(8, 2) * 80, plan)).all()


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["steps"][2].update(order=7), "step 2: field 'order'"),
    (lambda d: d["steps"][1].update(prediction="score"), "step 1: field 'prediction'"),
    (lambda d: d["steps"][0].update(order=2), "step 0: field 'points'"),
    (lambda d: d["steps"][3].update(order=2), "step 3: field 'order'"),
    (lambda d: d["steps"][1].update(ratios=[0.7, 0.3]), "step 1: field 'ratios'"),
    (lambda d: d["steps"][2].update(colour=1), "step 2: field 'colour'"),
    (lambda d: d["steps"][3].update(corrector="unic"), "step 3: field 'corrector'"),
    (lambda d: d["steps"][1].update(variable="sigma"), "step 1: field 'prediction'"),
    (lambda d: d.update(version=99), "field 'version'"),
    (lambda d: d.update(sigmas=[80, 1, 2, 0.1, 0]), "field 'sigmas'"),
    (lambda d: d["steps"].pop(), "field 'steps'"),
    (lambda d: d.update(nfe=3), "field 'nfe'"),
    (lambda d: d["steps"][3].update(points=[1]), "step 3: field 'points'"),
    (lambda d: d["steps"][1].update(order=2, ratios=[1.0], corrector="unic"), "step 1: field 'corrector'"),
])
def test_malformed_json_names_step_and_field(mutate, where):
    d = json.loads(fs.plans.get("dpm_solver_pp_2m", nfe=4).to_json())
    mutate(d)
    with pytest.raises(PlanError, match=where):
        Plan.from_json(json.dumps(d))


def test_not_json():
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.from_json("{steps: ")


def test_afs_saves_one_evaluation(den):
    plan = fs.plans.get("dpm_solver_pp_2m", nfe=5, afs="zero")
    assert plan.nfe == 5 and len(plan.steps) == 6
    counter = Counting(den)
    out = fs.sample(counter, torch.randn(4, 2) * 80, plan)
    assert counter.calls == 5 and torch.isfinite(out).all()
    mean = (den.weights[:, None] * den.means).sum(0)
    plan_m = Plan(plan.sigmas, plan.steps, afs="mean", afs_mean=mean)
    assert Plan.from_json(plan_m.to_json()) == plan_m


@pytest.mark.parametrize("name", ["dpm_solver_pp_3m", "unipc_bh2", "dpm_solver_3s", "heun", "ipndm"])
def test_batch_size_independence(den, name):
    x = torch.randn(9, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 80
    plan = fs.plans.get(name, nfe=6)
    full = fs.sample(den, x, plan)
    parts = torch.cat([fs.sample(den, x[:4], plan), fs.sample(den, x[4:], plan)])
    assert torch.allclose(full, parts, rtol=1e-12, atol=1e-12)


def test_dtype_shape_and_callback(den):
    img = fs.analytic.toy_mixture(dim=12, k=3)
    img.means = img.means.reshape(3, 1, 3, 4)
    img.stds = img.stds.reshape(3, 1, 3, 4)
    img.shape = (1, 3, 4)
    seen = []
    x = torch.randn(5, 1, 3, 4) * 80
    out = fs.sample(img, x, fs.plans.get("unipc_bh2", nfe=5), callback=seen.append)
    assert out.dtype == torch.float32 and out.shape == x.shape and len(seen) == 5
    assert set(seen[0]) == {"i", "x", "sigma", "denoised"}
    with pytest.raises(ValueError, match="event shape"):
        fs.sample(img, torch.randn(5, 12), fs.plans.get("ddim", nfe=2))
    with pytest.raises(ValueError, match="NaN"):
        fs.sample(den, torch.full((2, 2), float("nan")), fs.plans.get("ddim", nfe=2))


def test_range_warning(den):
    with pytest.warns(UserWarning, match="range"):
        fs.sample(den, torch.randn(2, 2) * 200, fs.plans.get("ddim", nfe=2, sigma_max=200.0))


def test_step_json_omits_defaults():
    assert Step().to_dict() == {} and Step(order=2).to_dict() == {"order": 2}


def test_corrector_beside_a_ratio_one_point_that_is_not_used_runs(den):
    """UniC on a singlestep step is fine when the ratio-1 intermediate does not feed the derivative."""
    st = Step(order=2, ratios=(0.5, 1.0), points=(1,), corrector="unic")
    plan = Plan(torch.tensor([80.0, 1.0, 0.002, 0.0]), (st, Step(order=1), Step(order=1)))
    assert torch.isfinite(fs.sample(den, torch.randn(8, 2) * 80, plan)).all()


def test_metadata_blocks_round_trip_and_do_not_change_the_plan():
    """A searched plan file (plan + "search" object) and a "meta" object are read, kept and written back."""
    d = fs.plans.get("unipc_bh2", nfe=4).to_dict()
    d["search"], d["meta"] = {"score": 0.25, "seed": 3, "tau": [0.1, 0.4]}, {"note": "hand-tuned"}
    plan = Plan.from_json(json.dumps(d))
    assert plan.metadata == {"search": d["search"], "meta": d["meta"]}
    assert plan == fs.plans.get("unipc_bh2", nfe=4)  # equality is the sampler, not its metadata
    again = json.loads(plan.to_json())
    assert again["search"] == d["search"] and again["meta"] == d["meta"]
    assert "search" not in plan.to_dict(metadata=False)


@pytest.mark.parametrize("bad", [[1, 2], "text", 3])
def test_metadata_must_be_an_object(bad):
    d = fs.plans.get("ddim", nfe=2).to_dict()
    d["meta"] = bad
    with pytest.raises(PlanError, match="field 'meta'"):
        Plan.from_dict(d)
