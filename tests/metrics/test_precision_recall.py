"""Precision/recall/density/coverage on cases whose answer is known by construction."""

import pytest
import torch

from fewstep.metrics.precision_recall import knn_radii, prdc


def test_identical_sets_score_one():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    r = prdc(x, x.clone(), k=3)
    assert r["precision"] == 1.0 and r["recall"] == 1.0 and r["coverage"] == 1.0
    # every real ball holds exactly k + 1 points (its centre and k neighbours; no ties): density = (k + 1) / k
    assert r["density"] == pytest.approx(4 / 3)


def test_far_disjoint_sets_score_zero():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(150, 4, generator=g), torch.randn(150, 4, generator=g) + 100
    r = prdc(real, fake)
    assert r == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_collapsed_generator_has_precision_but_no_recall():
    # all fakes near one real point: inside the real manifold (precision 1), but they cover almost nothing
    g = torch.Generator().manual_seed(2)
    real = torch.randn(300, 2, generator=g)
    fake = real[:1] + 1e-3 * torch.randn(300, 2, generator=g)
    r = prdc(real, fake)
    assert r["precision"] == 1.0 and r["recall"] < 0.05 and r["coverage"] < 0.05


def test_knn_radius_matches_brute_force():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # distances from 0: 1, 3, 7; from 1: 1, 2, 6; from 3: 3, 2, 4; from 7: 7, 6, 4 -> 2nd smallest of each
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than k"):
        knn_radii(x, 4)
