"""Small denoiser networks: an MLP for vectors and a UNet for images, both F(x_in, c_noise, cond=None) -> F_x.
`cond` is None, labels, or a dict of the conditions the net declares (`conds=`, see nets/conditions.py).

`NETS` maps the class name stored in a checkpoint config to the class; kwargs must be JSON-serialisable.
"""

from __future__ import annotations

from torch import nn

from . import conditions
from .conditions import drop_cond
from .diffusers_unet import DiffusersUNet2D
from .guidance_embed import GuidanceEmbedded
from .lora import LoRANet
from .mlp import MLP
from .unet import UNet

NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet, "diffusers_unet2d": DiffusersUNet2D}


def guidance_embedded(inner: dict[str, object], dim: int = 256, num_classes: int = 0) -> nn.Module:
    """The network `inner` ({"class", "kwargs"}) taking the guidance scale as a condition (LCM's w-embedding);
    num_classes repeats the inner network's (what the training loop reads from a net's kwargs)."""
    return GuidanceEmbedded(get(str(inner["class"]), **dict(inner.get("kwargs") or {})), dim)  # type: ignore[arg-type]


def lora_unet(inner: dict[str, object], rank: int = 4, targets: str = "attn+conv", guidance: float = 1.0,
              num_classes: int = 0) -> nn.Module:
    """The network `inner` (a diffusers UNet adapter) with rank-r LoRA adapters, base frozen (LCM-LoRA)."""
    net = get(str(inner["class"]), **dict(inner.get("kwargs") or {}))  # type: ignore[arg-type]
    return LoRANet(net, rank, targets, guidance)


NETS["guidance_embedded"] = guidance_embedded  # type: ignore[assignment]
NETS["lora_unet"] = lora_unet  # type: ignore[assignment]


def get(name: str, **kwargs: object) -> nn.Module:
    """Build a network by its registered name (mlp, unet) from JSON-serialisable kwargs."""
    if name not in NETS:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(sorted(NETS))}")
    return NETS[name](**kwargs)


def count_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["MLP", "NETS", "DiffusersUNet2D", "GuidanceEmbedded", "UNet", "conditions", "count_params", "drop_cond",
           "get", "guidance_embedded"]
