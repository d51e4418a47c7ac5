"""A budget larger than the plan space ends: at NFE 1 only a handful of distinct plans exist (was: an endless loop)."""

import contextlib
import signal

import pytest

import fewstep as fs
from fewstep.search import evolve
from fewstep.search.space import Space


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the suite) if the block runs longer than `seconds` (SIGALRM, main thread)."""
    def fail(*_):
        raise TimeoutError(f"did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def mixture():
    return fs.analytic.toy_mixture(dim=3, k=3, seed=1)


class _OnePlan(Space):
    """A space holding a single plan: every draw, mutation and crossover returns it."""

    def baselines(self):
        return [fs.plans.get("ddim", 1)]

    def random(self, rng):
        return self.baselines()[0]

    def mutate(self, plan, rng):
        return plan

    def crossover(self, a, b, rng):
        return a


def test_stage_zero_ends_when_the_space_is_exhausted():
    space = _OnePlan(1)
    state = evolve.new_state({}, evolve.Config(budget=500))
    with deadline(60):
        evolve.run(space, lambda plans: [0.0] * len(plans), evolve.Config(budget=500), 0, state)
    assert len(state["evaluated"]) == 1


@pytest.mark.parametrize("nfe, budget", [(1, 200), (2, 30)])
def test_search_at_tiny_nfe_ends(mixture, nfe, budget):
    with deadline(120):
        plan = fs.search.search(mixture, nfe, (3,), n_samples=8, budget=budget, seed=0)
    assert plan.nfe == nfe
    n = plan.extra["evaluations"]
    assert (n < budget) if nfe == 1 else (n == budget)  # NFE 1: a few distinct plans, all evaluated once
