"""What a careful user hits: absurd NFE, malformed plans, non-finite updates, integer noise - each a clear error
naming the field and the fix; and the engine keeps only the evaluations later steps read."""

import weakref

import pytest
import torch

import fewstep as fs
from fewstep.errors import PlanError
from fewstep.solvers.finite import NonFiniteError
from fewstep.solvers.plan import MAX_NFE


@pytest.fixture(scope="module")
def mixture():
    return fs.analytic.toy_mixture(dim=6, k=5, seed=3)


def _plan(**kw):
    return fs.Plan.from_dict({"version": 1, **kw})


class _NaNAt:
    """A denoiser that is exact except at sigma < `below`, where it returns NaN."""

    def __init__(self, den, below):
        self.den, self.below, self.sigma_min, self.sigma_max = den, below, den.sigma_min, den.sigma_max

    def __call__(self, x, sigma, cond=None):
        out = self.den(x, sigma)
        return out * float("nan") if float(torch.as_tensor(sigma).flatten()[0]) < self.below else out


X = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)) * 80
LINEAR_HUGE = [{}, {"order": 2, "relaxation": "linear", "coef": 1e308}, {}]
INNER_HUGE = [{}, {"order": 2, "ratios": [0.5, 1.0], "points": [2], "inner_relaxation": "linear", "coef": 1e308}, {}]

CASES = {
    "nfe over the cap": (lambda m: fs.plans.get("ddim", nfe=MAX_NFE + 1), ValueError,
                         r"nfe=10001 exceeds the limit of 10000 .*MAX_NFE.*smaller nfe"),
    "nfe a million": (lambda m: fs.plans.get("heun", nfe=1_000_000), ValueError, "nfe.*limit of 10000"),
    "plan over the cap": (lambda m: fs.Plan(torch.linspace(80, 0, MAX_NFE + 2), [fs.plans.Step()] * (MAX_NFE + 1)),
                          PlanError, "'steps'.*limit of 10000.*fewer steps"),
    "search over the cap": (lambda m: fs.search.search(m, MAX_NFE + 1, (6,), n_samples=4, budget=2), ValueError,
                            "nfe.*limit of 10000.*smaller nfe"),
    "sigma 1e300": (lambda m: _plan(sigmas=[1e300, 1, 0], steps=[{}, {}]), PlanError,
                    "'sigmas'.*1e\\+300 exceeds float32.*model's range"),
    "afs_mean inf": (lambda m: _plan(sigmas=[80, 1, 0], afs="mean", afs_mean=[float("inf")] * 6, steps=[{}, {}]),
                     PlanError, "'afs_mean'.*finite"),
    "afs_mean shape": (lambda m: fs.sample(m, X, _plan(sigmas=[80, 1, 0], afs="mean", afs_mean=[1.0, 2.0],
                                                       steps=[{}, {}])),
                       PlanError, r"'afs_mean'.*shape \(2,\).*expected one sample's shape \(6,\)"),
    "coef 1e308": (lambda m: fs.sample(m, X, _plan(sigmas=[80, 1, 0.002, 0], steps=LINEAR_HUGE)), NonFiniteError,
                   r"plan step 1 \(update, sigma 1 -> 0.002.*\"coef\": 1e\+308.*fix that step"),
    "coef 1e308 inside": (lambda m: fs.sample(m, X, _plan(sigmas=[80, 1, 0.002, 0], steps=INNER_HUGE)),
                          NonFiniteError, r"plan step 1 \(intermediate point 2.*fix that step"),
    "denoiser NaN": (lambda m: fs.sample(_NaNAt(m, 1.0), X, fs.plans.get("dpm_solver_pp_2m", 4)), NonFiniteError,
                     r"denoiser returned NaN/inf at plan step 2 \(sigma=0.068.*the plan is not at fault"),
    "x_T long": (lambda m: fs.sample(m, X.long(), fs.plans.get("ddim", 4)), TypeError,
                 r"x_T must be a floating-point tensor.*torch.int64.*x_T.float\(\)"),
    "x_T int32 (run)": (lambda m: next(fs.solvers.run(fs.plans.get("euler", 4), X.int())), TypeError,
                        "x_T must be a floating-point.*torch.int32"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_clear_errors(mixture, case):
    make, err, match = CASES[case]
    with pytest.raises(err, match=match):
        make(mixture)


def test_non_finite_error_is_a_floating_point_error(mixture):
    """Searches and benchmarks score a diverging plan as inf by catching FloatingPointError."""
    with pytest.raises(FloatingPointError):
        fs.sample(mixture, X, _plan(sigmas=[80, 1, 0.002, 0], steps=LINEAR_HUGE))
    assert fs.search.score.Scorer(mixture, (6,), n_samples=4)(_plan(sigmas=[80, 1, 0.002, 0], steps=LINEAR_HUGE)) \
        == float("inf")


class _Tracking:
    """Exact denoiser that counts how many of its earlier outputs are still alive at each call."""

    def __init__(self, den):
        self.den, self.sigma_min, self.sigma_max, self.refs, self.alive = den, den.sigma_min, den.sigma_max, [], []

    def __call__(self, x, sigma, cond=None):
        self.alive.append(sum(r() is not None for r in self.refs))
        out = self.den(x, sigma)
        self.refs.append(weakref.ref(out))
        return out


@pytest.mark.parametrize("name, most", [("ddim", 2), ("euler", 2), ("dpm_solver_pp_2m", 3), ("dpm_solver_pp_3m", 4),
                                        ("unipc_bh2", 3), ("ipndm", 5), ("deis_3", 4), ("heun", 3),
                                        ("dpm_solver_3s", 4)])
def test_engine_keeps_only_evaluations_later_steps_read(mixture, name, most):
    """History is bounded by the plan's order (+ the UniC corrector), not by the NFE (was: every evaluation kept)."""
    den = _Tracking(mixture)
    fs.sample(den, X, fs.plans.get(name, 41 if name == "heun" else 40))
    assert max(den.alive) <= most, den.alive
