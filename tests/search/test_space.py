"""The USF search space: every candidate spends exactly the NFE budget, validates, and runs on the oracle."""

import random

import pytest
import torch

import fewstep as fs
from fewstep.search.space import N_FEATURES, Space
from fewstep.solvers.plan import Plan


@pytest.fixture(scope="module")
def mixture():
    return fs.analytic.toy_mixture(dim=3, k=4, seed=1)


def test_thousand_candidates_respect_budget_validate_and_run(mixture):
    rng = random.Random(0)
    x_T = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80.0
    n = 0
    for nfe in (1, 2, 3, 4, 5, 6, 8, 10):
        space = Space(nfe, afs_mean=torch.zeros(3, dtype=torch.float64))
        pop = space.baselines()
        assert pop and all(p.nfe == nfe for p in pop)
        for k in range(125):
            op = k % 3
            if op == 0 or len(pop) < 2:
                p = space.random(rng)
            elif op == 1:
                p = space.mutate(rng.choice(pop), rng)
            else:
                p = space.crossover(rng.choice(pop), rng.choice(pop), rng)
            assert p.nfe == nfe <= nfe
            again = Plan.from_json(p.to_json())  # the engine's own validation, through the JSON round trip
            assert again == p
            f = space.features(p)
            assert f.shape == (len(p), N_FEATURES) and torch.isfinite(f).all()
            x0 = fs.sample(mixture, x_T, p)
            assert torch.isfinite(x0).all(), p.to_json()
            pop.append(p)
            n += 1
    assert n == 1000


def test_baselines_are_the_hand_made_constructors():
    names = {p.name.split("/")[0] for p in Space(6).baselines()}
    assert {"ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "deis_3", "ipndm", "euler"} <= names


def test_search_explores_every_decision():
    rng = random.Random(1)
    space = Space(6, afs_mean=torch.zeros(2, dtype=torch.float64))
    plans = [space.random(rng) for _ in range(300)]
    steps = [st for p in plans for st in p.steps]
    assert {st.order for st in steps} == {1, 2, 3, 4}
    assert {st.prediction for st in steps} == {"data", "noise"}
    assert any(st.ratios for st in steps) and any(st.corrector == "unic" for st in steps)
    assert any(st.relaxation == "linear" and st.coef != 0 for st in steps)
    mutated = [st for p in plans for st in space.mutate(p, rng).steps]
    assert any(st.points is not None for st in mutated)
    assert {p.afs for p in plans} == {"none", "zero", "mean"}
    finals = {round(float(p.sigmas[-2]), 6) for p in plans}
    assert len(finals) > 50 and min(finals) >= 0.002 - 1e-12  # the final sigma is searched, inside the range


def test_space_rejects_bad_budget():
    with pytest.raises(ValueError, match="nfe"):
        Space(0)
