"""S^3 under classifier-free guidance on an exact class-conditional model: a Gaussian mixture whose components
belong to classes (fs.analytic.ClassMixture), so the guided PF-ODE, D_u + g (D_c - D_u), has an exact reference."""

import pytest
import torch

import fewstep as fs
from fewstep.guidance import cfg
from fewstep.search.api import _val_seed
from fewstep.search.score import Scorer
from fewstep.search.space import Space

G = 2.5
LABELS = [0, 1, 2]


@pytest.fixture(scope="module")
def mixture():
    return fs.analytic.toy_class_mixture(dim=4, classes=3, per_class=2, spread=2.0, std=0.2, seed=1)


@pytest.fixture(scope="module")
def plan(mixture):
    """A search under guidance with the mean objective (on this mixture the rmse one mostly keeps Heun)."""
    torch.set_num_threads(1)  # module fixtures run before the autouse one-thread fixture
    return fs.search.search(mixture, 4, (4,), n_samples=48, budget=90, seed=0, cond=LABELS, guidance=G, n_val=256,
                            objective="mean")


def _labels(n):
    return torch.tensor(LABELS)[torch.arange(n) % len(LABELS)]


def test_class_mixture_is_the_exact_conditional_denoiser(mixture):
    """D(x, sigma, y) of the class mixture equals the denoiser of the mixture of class y's components alone, and
    D(x, sigma, None) the unconditional one."""
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    for y in range(3):
        keep = mixture.labels == y
        alone = fs.analytic.GaussianMixture(mixture.means[keep], mixture.stds[keep], mixture.weights[keep])
        assert torch.allclose(mixture(x, 1.3, torch.full((5,), y)), alone(x, 1.3), atol=1e-12)
        assert torch.allclose(mixture(x, 1.3, y), alone(x, 1.3), atol=1e-12)
    whole = fs.analytic.GaussianMixture(mixture.means, mixture.stds, mixture.weights)
    assert torch.equal(mixture(x, 1.3), whole(x, 1.3))
    with pytest.raises(ValueError, match="class label"):
        mixture(x, 1.3, 7)


def test_search_scores_the_guided_model(mixture, plan):
    """The recorded validation scores are those of an independent scorer of CFG(mixture, g) with the labels
    cycled over the validation noise, whose exact reference differs from the unguided one."""
    assert plan.extra["guidance"] == G and plan.nfe <= 4
    guided = cfg(mixture, G)
    val = Scorer(guided, (4,), 256, _val_seed(0), cond=_labels(256), objective=plan.extra["objective"])
    assert val.value(val.evidence(plan)) == pytest.approx(plan.extra["val_score"], rel=1e-9)
    plain = Scorer(mixture, (4,), 8, _val_seed(0), cond=_labels(8))
    assert (plain.ref - val.ref[:8]).abs().max() > 0.1  # guidance moves the ODE's end points


def test_guided_search_is_no_worse_than_the_best_hand_made_plan_on_heldout_noise(mixture, plan):
    """On 1024 held-out noises under the same guidance and labels: not significantly worse (1% paired-bootstrap
    quantile of the ratio <= 1) than the hand-made plan that is best on that very noise."""
    guided = cfg(mixture, G)
    held = Scorer(guided, (4,), 1024, seed=12345, cond=_labels(1024), objective=plan.extra["objective"])
    base = min(Space(4).baselines(), key=held)
    assert held.ratio_bound(held.evidence(plan), held.evidence(base), 0.01) <= 1.0, (plan.extra, base.name)
