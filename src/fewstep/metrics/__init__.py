"""Quality metrics on the project's own feature net: FD-digits with its real-data noise floor, precision/recall
(k-NN manifolds), classifier confidence/accuracy, and the RMS error of a solver against the exact ODE solution.

    m = fs.metrics.evaluate(x0, "digits", labels=None)   # {"fd", "noise_floor", "fd_over_floor", ...}
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..progress import Bar
from .classifier import class_probs, confidence, load_classifier, retrain
from .frechet import (
    Stats,
    fd,
    fd_between,
    features,
    frechet_distance,
    is_image_data,
    max_floor_n,
    noise_floor,
    real_data,
    real_features,
    real_halves,
    reference_stats,
    stats_of,
)
from .precision_recall import prdc
from .trajectory import reference_x0, rms, trajectory_error


def evaluate(samples: Tensor, dataset: str, labels: Tensor | None = None, k: int = 3, seed: int = 0,
             device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """All sample-quality numbers for samples [n, *shape] in [-1, 1] of data set `dataset`:
    fd, noise_floor (real held-out images at the same n, capped at the held-out size: noise_floor_n),
    fd_over_floor, precision/recall/density/coverage (k-NN, against n real reference images drawn with `seed`), and
    for image data sets classifier confidence (with the same number on real held-out images) and accuracy given
    labels. The feature classifier runs on `device`; `progress`: a bar over these stages on stderr."""
    n = len(samples)
    with Bar(3, "eval", enabled=progress) as bar:
        feats = features(samples, dataset, device=device)
        ref = real_features(dataset, "reference")
        floor_n = min(n, max_floor_n(dataset))
        out: dict[str, Any] = {"dataset": dataset, "n": n,
                               "fd": fd_between(stats_of(feats), reference_stats(dataset)),
                               "noise_floor": noise_floor(dataset, floor_n), "noise_floor_n": floor_n}
        out["fd_over_floor"] = out["fd"] / out["noise_floor"] if out["noise_floor"] > 0 else float("inf")
        bar.advance()
        g = torch.Generator().manual_seed(seed)
        real = ref[torch.randperm(len(ref), generator=g)[:n]]
        out.update(prdc(real, feats, k=min(k, n - 1, len(real) - 1)))
        bar.advance()
        if is_image_data(dataset):
            out.update(confidence(samples, dataset, labels, device=device))
            out["confidence_real"] = _real_confidence(dataset)
        bar.advance()
    return out


@functools.lru_cache(maxsize=8)
def _real_confidence(dataset: str) -> float:
    return confidence(real_data(dataset).x[real_halves(dataset)[1]], dataset)["confidence"]


__all__ = [
    "Stats", "class_probs", "confidence", "evaluate", "fd", "fd_between", "features", "frechet_distance",
    "is_image_data", "load_classifier", "max_floor_n", "noise_floor", "prdc", "real_data", "real_features",
    "real_halves", "reference_stats", "reference_x0", "retrain", "rms", "stats_of", "trajectory_error",
]
