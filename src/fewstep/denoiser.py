"""The one contract: a denoiser D(x, sigma, cond=None) -> x0_hat in VE coordinates (x = x0 + sigma * n).

Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative Models", Sec. 2.
Any callable with `sigma_min` and `sigma_max` attributes qualifies; nothing else is required.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Denoiser(Protocol):
    """D(x, sigma, cond=None) -> estimate of E[x0 | x]; sigma is a float or a tensor [batch]."""

    sigma_min: float
    sigma_max: float

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor: ...


def check_denoiser(den: Any) -> None:
    """Raise TypeError unless `den` is callable and carries a valid sigma range."""
    if not callable(den):
        raise TypeError(f"a denoiser must be callable as D(x, sigma), got {type(den).__name__}")
    for name in ("sigma_min", "sigma_max"):
        if not hasattr(den, name):
            raise TypeError(
                f"denoiser {type(den).__name__} has no attribute {name!r}; set den.sigma_min and den.sigma_max "
                "to the noise range it was trained on"
            )
    check_sigma_range(float(den.sigma_min), float(den.sigma_max))


def check_sigma_range(sigma_min: float, sigma_max: float) -> None:
    """Raise ValueError for a non-finite, non-positive or inverted range."""
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
        raise ValueError(f"sigma_min={sigma_min} and sigma_max={sigma_max} must be finite numbers")
    if sigma_min <= 0:
        raise ValueError(f"sigma_min must be > 0 (got {sigma_min}); the final step to sigma=0 is implicit")
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max}); swap them")


def check_finite(x: Tensor, name: str = "x") -> None:
    """Raise ValueError if a tensor holds NaN or inf."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} holds {bad} NaN/inf values; check the noise and the model's output")


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a [batch] tensor broadcasts against [batch, ...]."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def batch_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Return sigma as a tensor [batch] on x's device (a float or 0-d tensor is broadcast)."""
    if torch.is_tensor(sigma):
        s = sigma.to(x.device) if sigma.is_floating_point() else sigma.to(x.device, torch.float64)
    else:
        s = torch.tensor(float(sigma), dtype=torch.float64, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.ndim != 1 or s.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must be a float or a tensor [batch={x.shape[0]}], got shape {tuple(s.shape)}")
    return s
