"""Building blocks shared by the fewstep networks: the noise embedding and the label embedding.

The sinusoidal embedding of c_noise follows Vaswani et al. (2017) / Ho et al. (2020) as used by EDM's
`PositionalEmbedding` (Karras et al. 2022, training/networks.py); the null label for classifier-free guidance
follows Ho & Salimans (2022), Sec. 3.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of c_noise [B] -> [B, dim] in float32, frequencies geometric in [1, 1/max_period] times
    `scale`. The frequencies are computed, not stored, so casting a network to half precision leaves them exact."""

    def __init__(self, dim: int, scale: float = 1.0, max_period: float = 1e4) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"the noise embedding dim must be even, got {dim}")
        self.dim, self.scale, self.max_period = dim, scale, max_period

    @property
    def freqs(self) -> Tensor:
        """The dim/2 frequencies, float32 on the CPU."""
        half = self.dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
        return (freqs * self.scale).float()

    def forward(self, c_noise: Tensor) -> Tensor:
        arg = c_noise.reshape(-1, 1).float() * self.freqs.to(c_noise.device)
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class TimeEmbed(nn.Sequential):
    """c_noise [B] -> sinusoidal features -> MLP -> [B, emb_dim] (the module quantizers hook as `time_embed`).

    The float32 features are cast to the first linear layer's dtype, so a bf16/fp16 network runs."""

    def __init__(self, emb_dim: int, freq_dim: int = 128, scale: float = 1.0) -> None:
        super().__init__(NoiseEmbedding(freq_dim, scale), nn.Linear(freq_dim, emb_dim), nn.SiLU(),
                         nn.Linear(emb_dim, emb_dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        h = self[0](c_noise)
        weight = getattr(self[1], "weight", None)
        h = h.to(weight.dtype) if torch.is_tensor(weight) and weight.is_floating_point() else h
        for m in list(self)[1:]:
            h = m(h)
        return h


class LabelEmbed(nn.Module):
    """Class labels [B] -> [B, emb_dim]; index num_classes is the null label, used when cond is None."""

    def __init__(self, num_classes: int, emb_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes + 1, emb_dim)

    def forward(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if cond is None:
            cond = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        cond = torch.as_tensor(cond, device=device)
        if cond.dtype not in (torch.int32, torch.int64) or cond.shape != (batch,):
            raise TypeError(f"cond must be a LongTensor of labels [batch={batch}], got {cond.dtype} "
                            f"{tuple(cond.shape)}")
        if ((cond < 0) | (cond > self.num_classes)).any():
            raise ValueError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = unconditional)")
        return self.embed(cond.long())


def check_uncond(cond: object, name: str) -> None:
    """An unconditional network accepts only cond=None."""
    if cond is not None:
        raise ValueError(f"this {name} was built without classes (num_classes=0) but got labels; "
                         "pass cond=None or build it with num_classes > 0")


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so a residual branch or the output starts at 0 (EDM, init_zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
