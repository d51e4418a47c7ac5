"""The searched digits-edm plans shipped in zoo/files/plans: each spends its NFE, records the command that made
it, is what `fewstep sample --plan searched` loads, and the FD search reads the teacher's data set."""

import json
import shlex

import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.cli.main import cli
from fewstep.search.score import Scorer
from fewstep.seed import noise
from fewstep.zoo.lookup import resolve_plan

PLANS = sorted((fs.zoo.FILES / "plans").glob("digits-edm-nfe*.json"))


def test_digits_plans_ship_for_nfe_3_to_10():
    assert {int(p.stem.rsplit("nfe", 1)[1]) for p in PLANS} >= set(range(3, 11))


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_shipped_plan_spends_its_nfe_and_records_its_command(path):
    nfe = int(path.stem.rsplit("nfe", 1)[1])
    plan, meta = fs.search.read_plan_file(path)
    assert plan.nfe == nfe
    argv = shlex.split(meta["command"])
    assert argv[:2] == ["fewstep", "search"]
    opts = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert opts["--model"] == "digits-edm" and int(opts["--nfe"]) == nfe
    assert opts["--out"].endswith(f"zoo/files/plans/{path.name}")
    assert int(opts["--seed"]) == meta["seed"] and opts["--metric"] == meta["metric"]
    assert meta["evaluations"] >= int(opts["--budget"]) and meta["wall_s"] > 0
    # the recorded search-set score is the plan's own score, no worse than the best hand-made one it saw - unless
    # the validation re-scoring (evolve.best: lowest mean of search and validation score) preferred it
    if meta["score"] > meta["best_baseline_score"]:
        _check_validation_choice(plan, meta, nfe)
    assert resolve_plan("searched", None, nfe=nfe, model="digits-edm") == plan


def _check_validation_choice(plan, meta, nfe):
    """Re-score the shipped plan and the best hand-made plan on the search's validation noise: the shipped plan
    must reproduce its recorded validation score and win on the mean of search and validation scores."""
    from fewstep.search.api import _val_seed
    from fewstep.search.space import Space

    den = fs.zoo.load("digits-edm")
    lo, hi = float(den.sigma_min), float(den.sigma_max)
    val = Scorer(den, tuple(den.shape), meta["n_samples"], _val_seed(meta["seed"]), hi, meta["metric"],
                 dataset="digits")
    base = next(p for p in Space(nfe, lo, hi).baselines() if p.name == meta["best_baseline"])
    v_plan, v_base = val(plan), val(base)
    assert v_plan == pytest.approx(meta["val_score"], rel=1e-4)
    assert meta["score"] + v_plan <= meta["best_baseline_score"] + v_base


def test_sample_cli_uses_the_shipped_searched_plan():
    nfe = 4
    r = CliRunner().invoke(cli, ["sample", "--model", "digits-edm", "--plan", "searched", "--nfe", str(nfe),
                                 "--n", "4", "--out", "", "--no-metrics", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["nfe"] == nfe and out["plan"] == "searched"
    plan = resolve_plan("searched", None, nfe=nfe, model="digits-edm")
    den = fs.zoo.load("digits-edm")
    x = fs.generate(den, 4, plan=plan, seed=0)
    calls = []

    def counting(x, sigma, cond=None):
        calls.append(1)
        return den(x, sigma, cond)

    counting.sigma_min, counting.sigma_max = den.sigma_min, den.sigma_max
    y = fs.sample(counting, noise(4, 0, (1, 8, 8), float(plan.sigmas[0])), plan).clamp(-1, 1)  # fs.generate's range
    assert len(calls) == nfe and torch.allclose(x, y, atol=1e-5)


def test_fd_search_reads_the_data_set_from_the_teacher_config():
    den = fs.zoo.load("digits-edm")  # config["data"] is {"name": "digits", "split": "train"}
    plan = fs.search.search(den, 2, (1, 8, 8), n_samples=8, budget=3, seed=0, metric="fd",
                            config=fs.search.evolve.Config(budget=3, final=2))
    assert plan.nfe == 2 and plan.extra["metric"] == "fd"


def test_fd_scorer_computes_the_reference_only_when_asked():
    den = fs.zoo.load("digits-edm")
    s = Scorer(den, (1, 8, 8), n_samples=4, metric="fd", dataset="digits")
    assert s.cached_ref() is None  # the fd search never needs the 200-step reference
    plan = fs.plans.get("ddim", nfe=3, sigma_min=0.002, sigma_max=80.0)
    x = s.run(plan)
    assert s.score(x) == s(plan)
    assert s.score(x, "rms") == pytest.approx(float((x - s.ref).flatten(1).pow(2).mean(1).sqrt().mean()), rel=1e-5)
    assert s.cached_ref() is not None
