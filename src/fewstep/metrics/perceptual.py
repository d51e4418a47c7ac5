"""A perceptual distance for consistency distillation: LPIPS (Zhang et al. 2018, Eq. 1) in its "baseline" form,
unit weights over channels, on a small CNN trained for the data set (`classifier.RECIPES["<data>_perceptual"]`).

d(x, y) = sum_l 1 / (H_l W_l) sum_{h,w} || yhat^l_hw(x) - yhat^l_hw(y) ||^2, where yhat^l is stage l's activation
unit-normalised along channels. The CM paper's best CD runs use LPIPS (Song et al. 2023, Sec. 6). The net is not
the FD feature net (another seed and widths), so a CD loss on it does not optimise the evaluation's own features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .classifier import load_classifier

# image shape -> the shipped perceptual net for it
NETS = {(1, 8, 8): "digits_perceptual", (3, 8, 8): "digits_color_perceptual", (1, 28, 28): "mnist5k_perceptual"}


def net_for(shape: tuple[int, ...], device: str = "cpu"):
    """The shipped perceptual net for images of `shape` (C, H, W)."""
    name = NETS.get(tuple(shape))
    if name is None:
        known = ", ".join(f"{s} ({n})" for s, n in NETS.items())
        raise ValueError(f"no perceptual net for images of shape {tuple(shape)}; shipped: {known}. "
                         "Use the l2, l1 or pseudo_huber distance, or train one "
                         "(`fewstep metrics train-classifier <data>_perceptual` with a recipe for it)")
    return load_classifier(name, device)


def _unit(f: Tensor, eps: float = 1e-10) -> Tensor:
    return f / (f.square().sum(1, keepdim=True) + eps).sqrt()


def lpips(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample LPIPS-baseline distance [B] between image batches a, b [B, C, H, W] (values in [-1, 1]);
    differentiable in both (the net's weights are frozen)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"lpips needs two image batches of one shape [B, C, H, W], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    net = net_for(tuple(a.shape[1:]), str(a.device))
    fa, fb = net.stages(a.float()), net.stages(b.float())
    return torch.stack([(_unit(x) - _unit(y)).square().sum(1).mean((1, 2)) for x, y in zip(fa, fb, strict=True)]
                       ).sum(0)
