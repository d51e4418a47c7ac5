"""The attributes BoundaryDiffusion edits on digits, measured by fewstep's own measurers (never by eye).

- thickness: the ink mass per image area, mean(u) with u = (x + 1) / 2 in [0, 1] (each 8x8 pixel counts the ink
  of a 4x4 block of the 32x32 original, so at fixed size and length a thicker stroke has more ink); on digits the
  class explains only ~4% of its variance, so a thickness edit need not change the class;
- slant: the shear of the ink's second moments, -mu_11 / mu_02 (the deskewing shear of LeCun et al. 1998, rows
  downward): > 0 leans right;
- class: the project's digits classifier (fewstep.metrics.class_probs), for a class pair such as 3 <-> 8.
Binary labels for a boundary: above / below the median of the labelled images (or the class of the pair).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...metrics import class_probs


def _ink(x: Tensor) -> Tensor:
    return ((x.to(torch.float64).clamp(-1, 1) + 1) / 2).sum(1)  # [B, H, W]


def thickness(x: Tensor) -> Tensor:
    """Ink mass per area, mean((x + 1) / 2) over the pixels of images [B, C, H, W] in [-1, 1]: [B]."""
    return (_ink(x) / x.shape[1]).flatten(1).mean(1)


def slant(x: Tensor) -> Tensor:
    """-mu_11 / mu_02 of the ink distribution (column a, row r downward): the shear that deskews the digit; [B]."""
    u = _ink(x)
    B, H, W = u.shape
    r = torch.arange(H, dtype=torch.float64)[None, :, None]
    a = torch.arange(W, dtype=torch.float64)[None, None, :]
    m = u.flatten(1).sum(1).clamp_min(1e-8)[:, None, None]
    p = u / m
    mr, ma = (p * r).sum((1, 2), keepdim=True), (p * a).sum((1, 2), keepdim=True)
    mu11 = (p * (r - mr) * (a - ma)).sum((1, 2))
    mu02 = (p * (r - mr) ** 2).sum((1, 2)).clamp_min(1e-8)
    return -mu11 / mu02


def class_score(positive: int, negative: int, dataset: str = "digits") -> Callable[[Tensor], Tensor]:
    """log p(positive) - log p(negative) under the project's classifier: > 0 reads as the positive class."""
    def score(x: Tensor) -> Tensor:
        p = class_probs(x, dataset).to(torch.float64).clamp_min(1e-12)
        return p[:, positive].log() - p[:, negative].log()
    return score


MEASURES: dict[str, Callable[[Tensor], Tensor]] = {"thickness": thickness, "slant": slant}


def measure(name: str) -> Callable[[Tensor], Tensor]:
    """The measurer of an attribute: "thickness", "slant" or a class pair "3-8" (positive class last)."""
    if name in MEASURES:
        return MEASURES[name]
    a, sep, b = name.partition("-")
    if sep and a.isdigit() and b.isdigit():
        return class_score(int(b), int(a))
    raise ValueError(f"unknown attribute {name!r}; use thickness, slant or a class pair such as 3-8")
