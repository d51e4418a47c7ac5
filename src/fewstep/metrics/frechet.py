"""Fréchet distance on the project classifier's features (FD-digits), and the real-data noise floor beside it.

FD = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})  (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982).
Protocol: the data set's "all" split is cut once, seeded, into two disjoint halves. The first is the
*reference* every FD is measured against; n images of the second give the *noise floor*: what a perfect
generator (fresh real images) scores at the same n, since FD's bias grows as n shrinks.
Vector data sets (2-D toys) have no classifier; their features are the coordinates themselves.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import data
from ..data import ImageData
from ..errors import DataError
from .classifier import load_classifier

SPLIT_SEED = 2024


@dataclass(frozen=True)
class Stats:
    """Mean [d] and covariance [d, d] (float64) of n feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str = "eigh", eps: float = 1e-6) -> float:
    """tr (S_1 S_2)^{1/2}. "eigh": sum of sqrt eigenvalues of the similar PSD matrix S_1^{1/2} S_2 S_1^{1/2}
    (exact, ~100x faster than sqrtm at d=128); "sqrtm": scipy.linalg.sqrtm(S_1 S_2) as pytorch-fid computes it,
    with an eps*I offset when the product is singular."""
    if method == "eigh":
        r = _psd_sqrt(s1)
        return float(np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum())
    if method != "sqrtm":
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # singular S_1 S_2 (dead feature units) is expected; checked below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(len(s1)) * eps
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    return float(np.trace(covmean).real)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "eigh") -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}; "
                         "both Gaussians must live in the same d-dimensional feature space")
    diff = mu1 - mu2
    tr = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2, method)
    return float(max(diff @ diff + tr, 0.0))


def stats_of(feats: Tensor | np.ndarray) -> Stats:
    """Sample mean and (unbiased) covariance of features [n, d]."""
    f = np.asarray(feats.detach().cpu().double() if torch.is_tensor(feats) else feats, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features [n >= 2, d], got shape {f.shape}")
    return Stats(f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]), len(f))


def fd_between(a: Stats, b: Stats) -> float:
    """FD between two feature statistics."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def paired_bootstrap_ratio(fa: Tensor, fb: Tensor, ref: Stats, n_boot: int = 200, seed: int = 0,
                           q: tuple[float, float] = (0.05, 0.95)) -> tuple[float, float]:
    """Quantiles of FD(a) / FD(b) over bootstrap resamples of paired samples (row k of fa and fb came from the same
    noise, so both are resampled with the same indices): how much of a ratio is the sample, not the sampler."""
    if fa.shape != fb.shape:
        raise ValueError(f"paired features need equal shapes, got {tuple(fa.shape)} and {tuple(fb.shape)}")
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(n_boot):
        k = torch.randint(len(fa), (len(fa),), generator=g)
        ratios.append(fd_between(stats_of(fa[k]), ref) / fd_between(stats_of(fb[k]), ref))
    lo, hi = np.quantile(np.asarray(ratios), q)
    return float(lo), float(hi)


@functools.lru_cache(maxsize=4)
def real_data(dataset: str) -> ImageData:
    """The data set's "all" split, loaded once (mnist5k parses a CSV; fashion is 60k images)."""
    return data.get(dataset, "all")


def is_image_data(dataset: str) -> bool:
    return len(real_data(dataset).shape) == 3


@torch.no_grad()
def features(x: Tensor, dataset: str, batch: int = 500, device: str = "cpu") -> Tensor:
    """Feature vectors [n, d]: the classifier's penultimate layer for images (clamped to [-1, 1] first, as images
    are before FID), the flattened coordinates for vector data sets."""
    if not torch.is_tensor(x):
        raise TypeError(f"samples must be a torch.Tensor [n, *shape], got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise ValueError(f"samples hold {(~torch.isfinite(x)).sum().item()} NaN/inf values; the sampler diverged")
    if not is_image_data(dataset):
        return x.reshape(len(x), -1).double().cpu()
    net = load_classifier(dataset, str(device))
    if tuple(x.shape[1:]) != net.shape:
        raise ValueError(f"samples have shape {tuple(x.shape[1:])} but the {dataset!r} classifier takes {net.shape}; "
                         "evaluate against the data set the model was trained on")
    x = x.float().clamp(-1, 1)
    return torch.cat([net.features(x[i:i + batch].to(device)).double().cpu() for i in range(0, len(x), batch)])


@functools.lru_cache(maxsize=8)
def real_halves(dataset: str) -> tuple[Tensor, Tensor]:
    """Indices (reference, held_out) of the two fixed disjoint halves of the data set's "all" split."""
    n = len(real_data(dataset))
    if n < 4:
        raise DataError(f"data set {dataset!r} has {n} items; FD needs at least 4")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[: (n + 1) // 2].sort().values, perm[(n + 1) // 2:].sort().values


@functools.lru_cache(maxsize=8)
def real_features(dataset: str, half: str = "reference") -> Tensor:
    """Features of one real half ("reference" or "held_out"), cached."""
    ref, held = real_halves(dataset)
    if half not in ("reference", "held_out"):
        raise ValueError(f"half must be 'reference' or 'held_out', got {half!r}")
    return features(real_data(dataset).x[ref if half == "reference" else held], dataset)


@functools.lru_cache(maxsize=8)
def reference_stats(dataset: str) -> Stats:
    """Feature statistics of the reference half of the real data."""
    return stats_of(real_features(dataset, "reference"))


def fd(samples: Tensor, dataset: str) -> float:
    """FD of samples [n, *shape] (in [-1, 1]) against the real reference half of `dataset`."""
    if len(samples) < 2:
        raise ValueError("FD needs at least 2 samples")
    return fd_between(stats_of(features(samples, dataset)), reference_stats(dataset))


def fd_pixels(samples: Tensor, dataset: str) -> float:
    """FD on raw pixels (clamped to [-1, 1]) against the same reference half: no network in it, so a check on any
    method whose loss uses learned features (fewstep.metrics.perceptual). Meaningful for small images only."""
    if len(samples) < 2:
        raise ValueError("FD needs at least 2 samples")
    ref = real_data(dataset).x[real_halves(dataset)[0]]
    if tuple(samples.shape[1:]) != tuple(ref.shape[1:]):
        raise ValueError(f"samples have shape {tuple(samples.shape[1:])}, {dataset!r} images {tuple(ref.shape[1:])}")
    flat = [t.detach().float().clamp(-1, 1).reshape(len(t), -1).double().cpu() for t in (samples, ref)]
    return fd_between(*(stats_of(f) for f in flat))


def max_floor_n(dataset: str) -> int:
    """The largest n whose noise floor can be measured (the size of the held-out half)."""
    return len(real_halves(dataset)[1])


@functools.lru_cache(maxsize=64)
def noise_floor(dataset: str, n: int, repeats: int = 5, seed: int = 0) -> float:
    """Real-data noise floor: mean FD of n held-out real images against the reference half, over `repeats`
    disjoint-from-reference random subsets (one when n is the whole held-out half)."""
    held = real_features(dataset, "held_out")
    if not 2 <= n <= len(held):
        raise ValueError(f"noise floor needs 2 <= n <= {len(held)} (the held-out half of {dataset!r}), got n={n}")
    g = torch.Generator().manual_seed(seed)
    reps = 1 if n == len(held) else repeats
    ref = reference_stats(dataset)
    return float(np.mean([fd_between(stats_of(held[torch.randperm(len(held), generator=g)[:n]]), ref)
                          for _ in range(reps)]))


def floors(dataset: str, sizes: list[int | str]) -> dict[str, Any]:
    """The real-data noise floors of `dataset` at each n of `sizes` ("all": the whole held-out half), with the size
    of the reference half: what `fewstep metrics floor` prints."""
    top = max_floor_n(dataset)
    ns = [top if s == "all" else int(s) for s in sizes]
    return {"dataset": dataset, "reference_n": len(real_halves(dataset)[0]),
            "noise_floor": {str(n): noise_floor(dataset, n) for n in ns}}
