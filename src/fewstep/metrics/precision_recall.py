"""Precision and recall of generated samples in feature space with k-NN manifolds (Kynkäänniemi et al. 2019,
Eq. 1-3), plus density and coverage (Naeem et al. 2020, Eq. 3-4) from the same distance matrices."""

from __future__ import annotations

import torch
from torch import Tensor


def knn_radii(feats: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    if len(feats) <= k:
        raise ValueError(f"k-NN radii need more than k={k} points, got {len(feats)}; lower k or add samples")
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (distance 0)


def prdc(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, float]:
    """precision: share of fake points inside the real manifold (union of real k-NN balls); recall: share of real
    points inside the fake manifold; density: mean count of real balls holding a fake point / k; coverage: share
    of real balls holding at least one fake point."""
    real, fake = real.reshape(len(real), -1).double(), fake.reshape(len(fake), -1).double()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = torch.cdist(real, fake)  # [n_real, n_fake]
    inside_real = d <= r_real[:, None]  # fake j inside real ball i
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(1).double().mean().item(),
        "density": inside_real.double().sum(0).mean().item() / k,
        "coverage": (d.min(1).values <= r_real).double().mean().item(),
    }
