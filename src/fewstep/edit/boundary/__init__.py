"""BoundaryDiffusion (Zhu et al., NeurIPS 2023): learning-free semantic editing with a frozen diffusion model.

    b = fs.edit.boundary.fit(den, images, labels)              # invert to the mixing step, linear SVMs on x_t and h
    out = fs.edit.boundary.apply(den, images, b, distance=2.0)  # invert -> one-step move -> regenerate
"""

from __future__ import annotations

from .core import CANDIDATES, DEFAULT_PLAN, apply, edit_latent, fit, generate, latents, mixing_sigma
from .hook import Bottleneck, middle_block
from .latents import edit_plan, invert_to, move, radius_ratio, regenerate, sampling_plan, signed_distance
from .svm import Boundary, Hyperplane, fit_svm

load = Boundary.load

__all__ = ["CANDIDATES", "DEFAULT_PLAN", "Boundary", "Bottleneck", "Hyperplane", "apply", "edit_latent", "edit_plan",
           "fit", "fit_svm", "generate", "invert_to", "latents", "load", "middle_block", "mixing_sigma", "move",
           "radius_ratio", "regenerate", "sampling_plan", "signed_distance"]
