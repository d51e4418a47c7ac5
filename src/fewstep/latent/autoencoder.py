"""A KL-regularised autoencoder as a diffusers `AutoencoderKL` (Rombach et al. 2022, Sec. 3 and App. G), wrapped to
fewstep's Autoencoder protocol: encode(x in [-1, 1] at the data's size) -> standardised latents z, decode(z) -> x.

Images are padded with the background value -1 to the VAE's `sample_size` (28 -> 32: factor 4 gives 4x8x8) and
cropped back after decoding. Standardisation is the config's own `z = (mean - shift_factor) * scaling_factor`
(SD's 0.18215 is a scaling_factor; shift_factor as in SD3/Flux), so a diffusers user gets the same latents from
`AutoencoderKL.from_pretrained(folder)`. A `fewstep.json` beside the weights records the image size and data set.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError

META = "fewstep.json"  # fewstep's own record in a diffusers folder (kind, image size, data set, ...)


def make_vae(in_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64), latent_channels: int = 4,
             sample_size: int = 32, norm_groups: int = 8, layers_per_block: int = 1) -> nn.Module:
    """A diffusers AutoencoderKL with len(channels) - 1 downsamplings (3 levels: factor 4) and no attention."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=in_channels, out_channels=in_channels, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=tuple(channels), layers_per_block=layers_per_block, norm_num_groups=norm_groups,
        sample_size=sample_size, scaling_factor=1.0, shift_factor=0.0, mid_block_add_attention=False,
    )


class KLAutoencoder(nn.Module):
    """fewstep's view of an AutoencoderKL: encode -> standardised latents (posterior mean by default), decode ->
    images in [-1, 1] at `image_size`; `config` is fewstep's record (kind "autoencoder")."""

    def __init__(self, vae: nn.Module, image_size: int, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.vae, self.image_size = vae, int(image_size)
        size = int(vae.config.sample_size)
        if not 0 <= size - self.image_size <= size // 2:
            raise ValueError(f"image_size {image_size} does not fit the VAE's sample_size {size}")
        self.pad = (size - self.image_size) // 2
        self.config = {"kind": "autoencoder", "image_size": self.image_size, **(config or {})}

    @property
    def scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift(self) -> float:
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return (int(self.vae.config.latent_channels), *(int(self.vae.config.sample_size) // f,) * 2)

    def padded(self, x: Tensor) -> Tensor:
        p = self.pad
        return F.pad(x, (p, p, p, p), value=-1.0) if p else x

    def cropped(self, x: Tensor) -> Tensor:
        p = self.pad
        return x[..., p:p + self.image_size, p:p + self.image_size] if p else x

    def posterior(self, x: Tensor) -> Any:
        """q(z | x) of the raw (unstandardised) latents: a diffusers DiagonalGaussianDistribution."""
        return self.vae.encode(self.padded(x)).latent_dist

    def standardise(self, z_raw: Tensor) -> Tensor:
        return (z_raw - self.shift) * self.scale

    def encode(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """Standardised latents of images x [B, C, H, W] in [-1, 1]: the posterior mean, or a sample."""
        q = self.posterior(x.to(next(self.parameters()).dtype))
        return self.standardise(q.sample(generator) if sample else q.mean)

    def decode(self, z: Tensor) -> Tensor:
        """Images [B, C, image_size, image_size] in [-1, 1] from standardised latents z."""
        dtype = next(self.parameters()).dtype
        x = self.vae.decode((z / self.scale + self.shift).to(dtype)).sample
        return self.cropped(x).clamp(-1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write the diffusers folder (config.json + weights, `dtype` if given) and fewstep.json."""
        folder = Path(folder)
        vae = self.vae if dtype is None else copy_as(self.vae, dtype)
        vae.save_pretrained(str(folder))
        (folder / META).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> KLAutoencoder:
        """Load a folder written by save_pretrained (or any AutoencoderKL folder with an image size recorded)."""
        from diffusers import AutoencoderKL

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder} holds no config.json; an autoencoder is a diffusers AutoencoderKL folder")
        meta = json.loads((folder / META).read_text()) if (folder / META).is_file() else {}
        vae = AutoencoderKL.from_pretrained(str(folder)).float().eval()
        size = int(meta.get("image_size", vae.config.sample_size))
        return cls(vae, size, {k: v for k, v in meta.items() if k != "image_size"})


def copy_as(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `module` in `dtype` (the original is untouched)."""
    return copy.deepcopy(module).to(dtype)


def is_autoencoder_dir(path: str | os.PathLike) -> bool:
    """True for a folder holding a diffusers AutoencoderKL config."""
    cfg = Path(path) / "config.json"
    try:
        return cfg.is_file() and json.loads(cfg.read_text()).get("_class_name") == "AutoencoderKL"
    except (OSError, ValueError):
        return False
