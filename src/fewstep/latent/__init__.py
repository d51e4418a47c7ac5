"""The latent stack (Rombach et al. 2022, LDM): a KL autoencoder stored as a diffusers `AutoencoderKL`, a latent
denoiser (a denoiser on its standardised latents + the autoencoder that decodes them), and the diffusers folder
that holds both with an EDM scheduler config. Submodules load on first use (latent.config is torch-free)."""

from __future__ import annotations

from ..lazy import attach

_ATTRS = {
    "Autoencoder": "denoiser", "LatentDenoiser": "denoiser", "KLAutoencoder": "autoencoder", "make_vae": "autoencoder",
    "AEConfig": "config", "LDMConfig": "config", "train_autoencoder": "train_ae", "encode_dataset": "stack",
    "save_stack": "stack", "load_stack": "stack",
}

__all__ = sorted(_ATTRS)

__getattr__, __dir__ = attach(__name__, _ATTRS)
