"""A residual MLP denoiser network for vectors: F(x_in [B, D], c_noise [B], cond) -> [B, D]."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import LabelEmbed, TimeEmbed, check_uncond, zero_


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
                 emb_scale: float = 1.0) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"MLP needs dim, hidden, depth >= 1, got {dim}, {hidden}, {depth}")
        self.dim, self.num_classes = dim, num_classes
        self.time_embed = TimeEmbed(emb_dim, scale=emb_scale)
        self.label_embed = LabelEmbed(num_classes, emb_dim) if num_classes > 0 else None
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, emb_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), zero_(nn.Linear(hidden, dim)))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        if x_in.ndim != 2 or x_in.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape [batch, {self.dim}], got {tuple(x_in.shape)}")
        emb = self.time_embed(c_noise.reshape(-1).expand(x_in.shape[0]))
        if self.label_embed is not None:
            emb = emb + self.label_embed(cond, x_in.shape[0], x_in.device)
        else:
            check_uncond(cond, "MLP")
        h = self.inp(x_in)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
