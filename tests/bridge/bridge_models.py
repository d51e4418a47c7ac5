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


def first_order_plan(sigmas: list[float] | torch.Tensor):
    """DDIM as a USF plan: data prediction, order 1 in lambda, on the given grid (last value 0)."""
    from fewstep.solvers.plan import Plan, Step

    s = torch.as_tensor(sigmas, dtype=torch.float64)
    return Plan(s, tuple(Step(order=1) for _ in range(len(s) - 1)), name="ddim")


def dpmpp_2m_plan(sigmas: list[float] | torch.Tensor):
    """DPM-Solver++(2M) with diffusers' 'midpoint' second-order term and first-order first/last steps."""
    from fewstep.solvers.plan import Plan, Step

    s = torch.as_tensor(sigmas, dtype=torch.float64)
    n = len(s) - 1
    steps = [Step(order=1)] + [Step(order=2, relaxation="dpm_solver_2") for _ in range(n - 2)] + [Step(order=1)]
    return Plan(s, tuple(steps), name="dpm_solver_pp_2m")
