"""fs.metrics.evaluate: real held-out images score at the noise floor; corrupted ones far above it."""

import pytest
import torch

from fewstep import data, metrics
from fewstep.metrics.frechet import real_halves


@pytest.fixture(scope="module")
def held_out():
    d = data.get("digits", "all")
    idx = real_halves("digits")[1][:300]
    return d.x[idx], d.y[idx]


def test_real_images_sit_at_the_floor(held_out):
    x, y = held_out
    r = metrics.evaluate(x, "digits", labels=y)
    assert r["n"] == r["noise_floor_n"] == 300
    assert 0.3 < r["fd_over_floor"] < 3
    assert r["precision"] > 0.6 and r["recall"] > 0.6
    assert r["accuracy"] > 0.95 and r["confidence"] == pytest.approx(r["confidence_real"], rel=0.05)


def test_corruptions_score_far_above_the_floor(held_out):
    x, _ = held_out
    noisy = (x + 0.8 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    r = metrics.evaluate(noisy, "digits")
    assert r["fd_over_floor"] > 10 and "accuracy" not in r
    # a mode-collapsed set: one image repeated has precision but no recall
    collapsed = metrics.evaluate(x[:1].repeat(300, 1, 1, 1) + 0.01 * torch.randn(300, 1, 8, 8), "digits")
    assert collapsed["recall"] < 0.05 and collapsed["fd_over_floor"] > 10


def test_floor_n_is_capped_for_large_samples():
    x = data.get("digits", "all").x
    r = metrics.evaluate(x[:1000], "digits")
    assert r["n"] == 1000 and r["noise_floor_n"] == metrics.max_floor_n("digits") == 898


def test_vector_data_set_has_no_classifier_numbers():
    r = metrics.evaluate(data.get("gmm8", "test").x[:200], "gmm8")
    assert "confidence" not in r and r["fd_over_floor"] < 5
