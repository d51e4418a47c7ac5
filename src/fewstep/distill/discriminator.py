"""UFOGen's discriminator D(x_s, s, cond) -> logits, initialised from the teacher's network.

Xu et al. (2024), Sec. 4.3: both networks start from the pretrained diffusion model; the first author's code
(xuyanwu/SIDDMs-UFOGen, UFO_DiT/train_ufo.py: `model_dis.zero_init_last_layer()`) uses the *whole* pretrained
network with its last layer zero-initialised, one logit per output position, fed (x_{t-1}, t-1, class), not x_t.
`EncoderDisc` is the variant with the teacher's encoder half (input conv, down path, middle) and a new pooled,
zero-initialised linear head. The input is scaled as the teacher's preconditioning scales it (c_in, c_noise).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..denoiser import append_dims, batch_sigma
from ..nets import conditions as C
from ..nets.unet import ResBlock, UNet

__all__ = ["EncoderDisc", "UNetDisc", "make_discriminator"]


def _teacher_parts(teacher: nn.Module) -> tuple[UNet, Any]:
    net, precond = getattr(teacher, "net", None), getattr(teacher, "precond", None)
    if not isinstance(net, UNet) or precond is None:
        raise ValueError("the UFOGen discriminator copies the teacher's fewstep UNet (a Preconditioned denoiser such "
                         f"as digits-edm); got {type(teacher).__name__}")
    return copy.deepcopy(net).float().train().requires_grad_(True), precond


class UNetDisc(nn.Module):
    """The teacher's whole UNet, its output conv zero-initialised: logits [B, C, H, W] (the code's D)."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.net, self.precond = _teacher_parts(teacher)
        last = self.net.out[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = batch_sigma(sigma, x).to(torch.float64)
        c_in = append_dims(self.precond.c_in(s), x.ndim).to(x.dtype)
        return self.net(c_in * x, self.precond.c_noise(s).to(x.dtype), cond)


class EncoderDisc(nn.Module):
    """The teacher's encoder (input conv, down path, middle blocks) + GroupNorm-SiLU-mean-pool and a new
    zero-initialised linear head: one logit per image [B, 1]."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        net, self.precond = _teacher_parts(teacher)
        self.time_embed, self.label_embed, self.cond_embed = net.time_embed, net.label_embed, net.cond_embed
        self.inp, self.down, self.mid, self.conds = net.inp, net.down, net.mid, net.conds
        ch = self.mid[-1].conv2.out_channels
        self.norm = nn.GroupNorm(math.gcd(32, ch), ch)
        self.head = nn.Linear(ch, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        s = batch_sigma(sigma, x).to(torch.float64)
        x_in = append_dims(self.precond.c_in(s), x.ndim).to(x.dtype) * x
        B, c = x.shape[0], C.as_dict(cond, self.conds, "discriminator")
        emb = self.time_embed(self.precond.c_noise(s).to(x.dtype).reshape(-1).expand(B))
        if self.label_embed is not None:
            emb = emb + self.label_embed(c.get(C.LABEL), B, x.device)
        emb = F.silu(self.cond_embed(emb, c))
        h = self.inp(C.concat_maps(x_in, c, self.conds))
        for m in [*self.down, *self.mid]:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        return self.head(F.silu(self.norm(h)).mean((2, 3)))


def make_discriminator(kind: str, teacher: nn.Module) -> nn.Module:
    """'unet' (UNetDisc, the code's) or 'encoder' (EncoderDisc), initialised from `teacher`."""
    if kind == "unet":
        return UNetDisc(teacher)
    if kind == "encoder":
        return EncoderDisc(teacher)
    raise ValueError(f"unknown discriminator {kind!r}; known: unet, encoder")
