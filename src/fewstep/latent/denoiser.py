"""A latent denoiser: a denoiser on an autoencoder's latents plus that autoencoder (Rombach et al. 2022, LDM Sec. 3).

It is still a denoiser (D(z, sigma, cond) on latents), so every solver, search and distiller applies to it
unchanged; `decode` maps latent samples back to pixels, which `fs.generate` does after sampling.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Autoencoder(Protocol):
    """encode(x [B, C, H, W] in [-1, 1]) -> z (standardised latents); decode(z) -> x."""

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


class LatentDenoiser(nn.Module):
    """D(z, sigma, cond) = den(z, sigma, cond) on latents; `autoencoder` decodes samples to pixels."""

    def __init__(self, den: nn.Module, autoencoder: Any) -> None:
        super().__init__()
        if not isinstance(autoencoder, Autoencoder):
            raise TypeError(f"the autoencoder must have encode(x) and decode(z), got {type(autoencoder).__name__}")
        self.den, self.autoencoder = den, autoencoder
        self.sigma_min, self.sigma_max = den.sigma_min, den.sigma_max
        self.shape = getattr(den, "shape", None)
        self.config: dict[str, Any] = {}

    def forward(self, z: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        return self.den(z, sigma, cond)

    def encode(self, x: Tensor) -> Tensor:
        return self.autoencoder.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode(z)
