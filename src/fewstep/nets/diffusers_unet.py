"""A diffusers UNet as a fewstep network F(x_in, c_noise, cond): the adapter the diffusers bridge wraps around a
loaded UNet, and `DiffusersUNet2D`, a UNet2DModel built from its config (so fewstep trains a real diffusers part,
as LDM's latent teacher, Rombach et al. 2022). Class labels go to `class_labels`; cond=None is the null label
when one is declared (classifier-free guidance, Ho & Salimans 2022). diffusers is imported on construction only.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn


class UNetNet(nn.Module):
    """Adapter F(x_in, c_noise, cond) -> raw UNet output; `cond` is a tensor or a dict of UNet kwargs; cond=None
    becomes the label `null_label` (when given) for a class-conditional UNet."""

    def __init__(self, unet: nn.Module, learned_variance: bool = False, null_label: int | None = None) -> None:
        super().__init__()
        self.unet, self.learned_variance, self.null_label = unet, learned_variance, null_label
        params = inspect.signature(unet.forward).parameters
        self.cond_key = "encoder_hidden_states" if "encoder_hidden_states" in params else "class_labels"

    def forward(self, x_in: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        if cond is None and self.null_label is not None:
            cond = torch.full((x_in.shape[0],), self.null_label, dtype=torch.long, device=x_in.device)
        if cond is None:
            kwargs: dict[str, Any] = {}
        elif isinstance(cond, dict):
            kwargs = dict(cond)
        else:
            kwargs = {self.cond_key: cond}
        for k, v in kwargs.items():  # embeddings in the network's dtype (an fp16 UNet given float32 prompt embeds)
            if torch.is_tensor(v) and v.is_floating_point() and v.dtype != x_in.dtype:
                kwargs[k] = v.to(x_in.dtype)
        out = self.unet(x_in, t, return_dict=False, **kwargs)[0]
        if self.learned_variance and out.shape[1] == 2 * x_in.shape[1]:
            out = out[:, : x_in.shape[1]]  # learned-variance heads: the first half is the mean parameterisation
        return out


class DiffusersUNet2D(UNetNet):
    """A diffusers UNet2DModel from its JSON config; `num_classes` > 0 adds num_classes + 1 class embeddings, the
    last the null label. The weights are the diffusers module's (`.unet.save_pretrained` writes a diffusers folder)."""

    def __init__(self, config: dict[str, Any], num_classes: int = 0) -> None:
        from diffusers import UNet2DModel

        cfg = dict(config)
        if num_classes:
            cfg["num_class_embeds"] = int(num_classes) + 1
        super().__init__(UNet2DModel(**cfg), null_label=int(num_classes) if num_classes else None)
        self.num_classes = int(num_classes)


def unet2d_config(in_channels: int, sample_size: int, channels: tuple[int, ...], layers_per_block: int = 1,
                  attention_head_dim: int = 32, norm_groups: int = 16) -> dict[str, Any]:
    """A UNet2DModel config: one level per width, self-attention at every level below the first."""
    down = ("DownBlock2D",) + ("AttnDownBlock2D",) * (len(channels) - 1)
    up = ("AttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",)
    return {"sample_size": sample_size, "in_channels": in_channels, "out_channels": in_channels,
            "block_out_channels": list(channels), "layers_per_block": layers_per_block, "down_block_types": list(down),
            "up_block_types": list(up), "attention_head_dim": attention_head_dim, "norm_num_groups": norm_groups}
