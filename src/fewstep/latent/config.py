"""The latent stack's training runs as data (torch-free, for the CLI): the autoencoder's and the latent teacher's
networks and hyper-parameters. Defaults are the recipes of the shipped mnist-ae / mnist-ldm."""

from __future__ import annotations

from dataclasses import dataclass

from ..train.config import option


@dataclass
class AEConfig:
    """A KL autoencoder run (LDM App. G practice at 28x28): L1 + perceptual x LPIPS reconstruction on posterior
    samples + kl_weight x KL per pixel, AdamW with warm-up and a cosine decay."""

    channels: str = option("16,32,64", "encoder/decoder widths per level (3 levels: downsampling factor 4)")
    latent_channels: int = option(4, "latent channels (4 x 8 x 8 latents at 28x28 padded to 32)", min=1)
    kl_weight: float = option(1e-5, "weight of KL(q(z|x) || N(0, I)) per pixel relative to the per-pixel L1 "
                                    "(LDM: 1e-6 of the summed loss)", min=0)
    perceptual: float = option(1.0, "weight of the LPIPS-baseline distance on the project's perceptual net "
                                    "(fewstep.metrics.perceptual; not the FD net), LDM's perceptual term", min=0)
    steps: int = option(1000, min=1)
    batch: int = option(64, min=1)
    lr: float = option(1e-3, min=0, min_open=True)
    warmup: int = option(100, min=0)
    ckpt_every: int = option(200, "write the training checkpoint every N steps", min=1)
    seed: int = option(0)

    def widths(self) -> tuple[int, ...]:
        try:
            out = tuple(int(c) for c in self.channels.split(","))
        except ValueError:
            out = ()
        if len(out) < 2 or min(out) < 8 or any(c % 8 for c in out):
            raise ValueError(f"--channels must be comma-separated widths, multiples of 8, at least two levels "
                             f"(e.g. 16,32,64), got {self.channels!r}")
        return out


@dataclass
class LDMConfig:
    """The latent teacher's network: a diffusers UNet2DModel on the latents with class embeddings (null label =
    num_classes, for classifier-free guidance), attention at the lower levels."""

    unet_channels: str = option("64,128", "UNet2DModel block_out_channels (attention below the first level)")
    layers_per_block: int = option(1, min=1)
    attention_head_dim: int = option(32, min=1)
