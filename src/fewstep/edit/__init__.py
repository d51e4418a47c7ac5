"""Zero-shot editing with consistency models (Song et al. 2023, Alg. 4): one operator over an orthogonal A and a
mask; inpainting, super-resolution, colorization, stroke guidance, denoising, interpolation.
`fewstep.edit.boundary`: BoundaryDiffusion (Zhu et al. 2023), linear boundaries at the mixing step of a frozen model."""

from __future__ import annotations

from . import boundary
from .ops import (
    algorithm4,
    colorize,
    denoise,
    inpaint,
    interpolate,
    select_consistent,
    self_consistency,
    slerp,
    stroke,
    superres,
)
from .transforms import Orthogonal, identity, luma, patch_mean

__all__ = ["Orthogonal", "algorithm4", "boundary", "colorize", "denoise", "identity", "inpaint", "interpolate", "luma",
           "patch_mean", "select_consistent", "self_consistency", "slerp", "stroke", "superres"]
