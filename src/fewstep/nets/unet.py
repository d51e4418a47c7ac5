"""A small UNet for images: F(x_in [B, C, H, W], c_noise [B], cond) -> [B, C, H, W].

ADM-style layout (Dhariwal & Nichol 2021; EDM's DhariwalUNet, Karras et al. 2022): GroupNorm-SiLU-conv residual
blocks with the embedding added through a per-block `emb_proj`, self-attention at the lowest resolution,
a `time_embed` MLP on c_noise and the conditions of nets/conditions.py (labels with a null class for
classifier-free guidance, scalars such as LCM's w, maps as extra input channels). Any H, W (odd sizes are
handled by resizing upsampled maps to the skip's size) and any channel count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import conditions as C
from .layers import LabelEmbed, TimeEmbed, zero_


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, ch), ch)


class ResBlock(nn.Module):
    """h + conv(SiLU(GN(conv(SiLU(GN(h))) + emb_proj(emb)))) with a 1x1 skip when channels change."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        r = self.conv1(F.silu(self.norm1(h))) + self.emb_proj(emb)[:, :, None, None]
        r = self.conv2(self.drop(F.silu(self.norm2(r))))
        return self.skip(h) + r


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, zero-initialised output."""

    def __init__(self, ch: int, heads: int = 4) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"attention channels {ch} must be divisible by heads {heads}")
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), zero_(nn.Conv2d(ch, ch, 1))

    def forward(self, h: Tensor) -> Tensor:
        B, C, H, W = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        return h + self.proj(a.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """Small UNet denoiser network; `time_embed` and each block's `emb_proj` carry the noise embedding.

    `conds` declares the conditions (nets/conditions.py; `num_classes=K` is short for a label "y"); in_channels
    counts x's channels only, the map conditions' channels are added to the input conv (zero weights)."""

    def __init__(self, in_channels: int = 1, channels: int = 64, channel_mult: Sequence[int] = (1, 2, 2),
                 num_blocks: int = 2, attn_heads: int = 4, num_classes: int = 0, dropout: float = 0.0,
                 emb_scale: float = 1.0, conds: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        if in_channels < 1 or channels < 1 or not channel_mult or num_blocks < 1:
            raise ValueError("UNet needs in_channels, channels, num_blocks >= 1 and a non-empty channel_mult")
        self.conds = C.parse(conds, num_classes)
        self.in_channels = in_channels
        self.num_classes = int(self.conds[C.LABEL]["num_classes"]) if C.LABEL in self.conds else 0
        emb_dim = 4 * channels
        self.time_embed = TimeEmbed(emb_dim, freq_dim=channels + channels % 2, scale=emb_scale)
        self.label_embed = LabelEmbed(self.num_classes, emb_dim) if self.num_classes > 0 else None
        self.cond_embed = C.CondEmbed(self.conds, emb_dim)
        self.inp = C.widen_in(nn.Conv2d(in_channels, channels, 3, padding=1), C.map_channels(self.conds))
        chs, c = [channels], channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                self.down.append(ResBlock(c, channels * mult, emb_dim, dropout))
                c = channels * mult
                chs.append(c)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                chs.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout), Attention(c, attn_heads),
                                  ResBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.up.append(ResBlock(c + chs.pop(), channels * mult, emb_dim, dropout))
                c = channels * mult
            if level > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))  # preceded by nearest upsampling
        self.out = nn.Sequential(_norm(c), nn.SiLU(), zero_(nn.Conv2d(c, in_channels, 3, padding=1)))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if x_in.ndim != 4 or x_in.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects x of shape [batch, {self.in_channels}, H, W], got {tuple(x_in.shape)}")
        B, c = x_in.shape[0], C.as_dict(cond, self.conds, "UNet")
        emb = self.time_embed(c_noise.reshape(-1).expand(B))
        if self.label_embed is not None:
            emb = emb + self.label_embed(c.get(C.LABEL), B, x_in.device)
        emb = F.silu(self.cond_embed(emb, c))
        h = self.inp(C.concat_maps(x_in, c, self.conds))
        skips = [h]
        for m in self.down:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            skips.append(h)
        for m in self.mid:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            if isinstance(m, ResBlock):
                h = m(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = m(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.out(h)
