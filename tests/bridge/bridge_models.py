"""Tiny random-weight diffusers models for the bridge tests (built here, saved with save_pretrained)."""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")


def tiny_unet(num_class_embeds: int | None = None, out_channels: int = 3) -> torch.nn.Module:
    """A 8x8, 3-channel UNet2DModel with random weights (seeded)."""
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=out_channels, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=num_class_embeds,
    ).eval()


def tiny_cond_unet() -> torch.nn.Module:
    """A 8x8, 4-channel UNet2DConditionModel with cross-attention dim 8 and random weights (seeded)."""
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
    ).eval()
