"""The model kind of a UFOGen generator (Xu et al. 2024): a denoiser G(x, sigma, cond) -> x0 sampled by the
re-noising loop (one step from sigma_max; multistep re-noising, the diffusers community UFOGenScheduler), whose
sigmas for each step count the checkpoint's config records ("sampler": {"sigmas": {"K": [...]}})."""

from __future__ import annotations

from ..io import build_denoiser
from ..kinds import Kind, register


def _generator(config, state, base):  # noqa: ANN001, ANN202 (kinds.Builder)
    return build_denoiser(config, state)


UFOGEN = register(Kind("ufogen", _generator, "renoise",
                       doc="a UFOGen one-step generator G(x_t, sigma) -> x0 (Xu et al. 2024), re-noised for multistep"))
