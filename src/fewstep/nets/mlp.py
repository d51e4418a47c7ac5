"""A residual MLP denoiser network for vectors: F(x_in [B, D], c_noise [B], cond) -> [B, D].

Conditions as in nets/conditions.py: labels, scalars, and "map" conditions as extra input features [B, channels]."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from . import conditions as C
from .layers import LabelEmbed, TimeEmbed, zero_


class _Block(nn.Module):
    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.emb_proj = nn.Linear(emb_dim, hidden)
        self.fc1, self.fc2 = nn.Linear(hidden, hidden), zero_(nn.Linear(hidden, hidden))
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        r = self.fc1(self.act(self.norm(h))) + self.emb_proj(emb)
        return h + self.fc2(self.act(r))


class MLP(nn.Module):
    """Residual MLP with a sinusoidal c_noise embedding and optional class labels (null label = num_classes)."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, emb_dim: int = 128, num_classes: int = 0,
                 emb_scale: float = 1.0, conds: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"MLP needs dim, hidden, depth >= 1, got {dim}, {hidden}, {depth}")
        self.conds = C.parse(conds, num_classes)
        self.dim = dim
        self.num_classes = int(self.conds[C.LABEL]["num_classes"]) if C.LABEL in self.conds else 0
        self.time_embed = TimeEmbed(emb_dim, scale=emb_scale)
        self.label_embed = LabelEmbed(self.num_classes, emb_dim) if self.num_classes > 0 else None
        self.cond_embed = C.CondEmbed(self.conds, emb_dim)
        self.inp = C.widen_in(nn.Linear(dim, hidden), C.map_channels(self.conds))
        self.blocks = nn.ModuleList(_Block(hidden, emb_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), zero_(nn.Linear(hidden, dim)))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if x_in.ndim != 2 or x_in.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape [batch, {self.dim}], got {tuple(x_in.shape)}")
        c = C.as_dict(cond, self.conds, "MLP")
        emb = self.time_embed(c_noise.reshape(-1).expand(x_in.shape[0]))
        if self.label_embed is not None:
            emb = emb + self.label_embed(c.get(C.LABEL), x_in.shape[0], x_in.device)
        emb = self.cond_embed(emb, c)
        h = self.inp(C.concat_maps(x_in, c, self.conds))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
