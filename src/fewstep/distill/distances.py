"""The distances d(a, b) of consistency losses and the ODE-pair regression (Song et al. 2023, Sec. 6;
Song & Dhariwal 2024, Sec. 3.3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import DISTANCES


def distance(name: str, a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """d(a, b) per sample: 'l2' mean squared, 'l1' mean absolute (CM code `mean_flat`), 'pseudo_huber'
    sqrt(||a - b||^2 + c^2) - c on the whole vector, c = 0.00054 sqrt(d) by default (iCT Sec.
    3.3), 'cauchy' (c/2) log(1 + ||a - b||^2 / c^2) (Dao et al. 2025, 'Improved Training Technique for Latent
    Consistency Models', Sec. 4), 'lpips' the
    perceptual distance of fewstep.metrics.perceptual (CM Sec. 6's best CD runs)."""
    if name == "lpips":
        from ..metrics.perceptual import lpips

        return lpips(a, b).to(torch.float64)
    diff = (a - b).reshape(a.shape[0], -1).to(torch.float64)
    if name == "l2":
        return diff.square().mean(1)
    if name == "l1":
        return diff.abs().mean(1)
    if name == "pseudo_huber":
        c = 0.00054 * math.sqrt(diff.shape[1]) if c is None else c
        return (diff.square().sum(1) + c**2).sqrt() - c
    if name == "cauchy":  # (c / 2) log(1 + ||a - b||^2 / c^2): pseudo-Huber's ||.||^2 / 2c near 0, log tails
        c = 0.00054 * math.sqrt(diff.shape[1]) if c is None else c
        return 0.5 * c * torch.log1p(diff.square().sum(1) / c**2)
    raise KeyError(f"unknown distance {name!r}; known: {', '.join(DISTANCES)}")
