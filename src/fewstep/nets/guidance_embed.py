"""A network that takes the guidance scale w as a condition: LCM's w-embedding (Luo et al. 2023, Sec. 4.2 and
Eq. 9), added to the time embedding of any UNet (diffusers' `time_embedding`, fewstep's `time_embed`).

The projection is zero-initialised, so a student built around the teacher's network starts equal to the teacher
(diffusers' LCM script initialises `cond_proj` randomly). cond is {"y": labels, "w": [B] scales} (what
`fs.generate` passes to a kind with guidance "input"), labels alone, or None; a missing w is 1 (no guidance).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

TIME_MODULES = ("unet.time_embedding", "time_embedding", "time_embed")  # where the time embedding is computed


def scale_embedding(w: Tensor, dim: int = 256, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding [B, dim] of (w - 1) * scale: diffusers' `get_guidance_scale_embedding` on LCM's w,
    which is our g - 1 (the "1 + w" form, Luo et al. 2023, Eq. 9)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=w.device) / (half - 1))
    a = ((w.float() - 1.0) * scale)[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


def split_cond(cond: Any, n: int, device: torch.device) -> tuple[Any, Tensor]:
    """(the inner network's cond, w [n]) from {"y", "w"}, labels, or None; w defaults to 1."""
    if isinstance(cond, dict):
        rest = {k: v for k, v in cond.items() if k != "w"}
        w = cond.get("w")
        inner = rest.get("y") if set(rest) <= {"y"} else rest
    else:
        inner, w = cond, None
    w = torch.ones(n, device=device) if w is None else torch.as_tensor(w, device=device, dtype=torch.float32)
    return inner, w.expand(n) if w.ndim == 0 else w


class GuidanceEmbedded(nn.Module):
    """F(x_in, c_noise, {"y", "w"}) = inner(x_in, c_noise, y) with proj(scale_embedding(w)) added to the output of
    the inner network's time-embedding module (found by name, TIME_MODULES); proj starts at zero."""

    def __init__(self, inner: nn.Module, dim: int = 256) -> None:
        super().__init__()
        self.inner, self.dim = inner, int(dim)
        name, module = self._time_module(inner)
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"the time-embedding module {name!r} has no Linear layer to size the w-projection by")
        self.time_path = name
        self.proj = nn.Linear(self.dim, linears[-1].out_features)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    @staticmethod
    def _time_module(inner: nn.Module) -> tuple[str, nn.Module]:
        found = dict(inner.named_modules())
        for name in TIME_MODULES:
            if name in found:
                return name, found[name]
        raise ValueError(f"no time-embedding module ({', '.join(TIME_MODULES)}) in {type(inner).__name__}; the "
                         "w-embedding is added there")

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        inner_cond, w = split_cond(cond, x_in.shape[0], x_in.device)
        e = self.proj(scale_embedding(w, self.dim).to(self.proj.weight.dtype))
        module = self.inner.get_submodule(self.time_path)
        hook = module.register_forward_hook(lambda _m, _i, out: out + e.to(out.dtype))  # this call only
        try:
            return self.inner(x_in, c_noise, inner_cond)
        finally:
            hook.remove()
