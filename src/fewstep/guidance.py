"""Classifier-free guidance as a denoiser wrapper: D_w = D_u + w (D_c - D_u) (Ho & Salimans 2022, Eq. 6).

Applied to x0 estimates; for an eps model D = x - sigma eps is affine in eps with the same coefficients, so this
equals guidance on eps (what diffusers pipelines do). Generic: any denoiser and any cond (tensor, dict, None).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .denoiser import append_dims, batch_sigma, check_denoiser


def _cat(a: Any, b: Any, n: int) -> Any:
    """Concatenate two conds along the batch (a batch-1 tensor is expanded to n); None if they do not match."""
    if torch.is_tensor(a) and torch.is_tensor(b):
        a = a.expand(n, *a.shape[1:]) if a.shape[0] == 1 and n > 1 else a
        b = b.expand(n, *b.shape[1:]) if b.shape[0] == 1 and n > 1 else b
        return torch.cat([a, b]) if a.shape[0] == b.shape[0] == n and a.shape[1:] == b.shape[1:] else None
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        out = {k: _cat(a[k], b[k], n) for k in a}
        return None if any(v is None for v in out.values()) else out
    return None


class CFG:
    """D_w(x, sigma, cond) = D(x, sigma, uncond) + w (D(x, sigma, cond) - D(x, sigma, uncond)).

    `batched=True` evaluates both branches in one call when the conds concatenate along the batch (tensors or dicts
    of tensors), else in two calls. Carries sigma_min/sigma_max (and shape) of the wrapped denoiser.
    """

    def __init__(self, den: Any, scale: float, uncond: Any = None, batched: bool = True) -> None:
        check_denoiser(den)
        self.den, self.scale, self.uncond, self.batched = den, float(scale), uncond, batched
        self.sigma_min, self.sigma_max = den.sigma_min, den.sigma_max
        self.shape = getattr(den, "shape", None)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        if self.scale == 1.0:
            return self.den(x, sigma, cond)
        n = x.shape[0]
        both = _cat(self.uncond, cond, n) if self.batched else None
        if both is not None:
            s = batch_sigma(sigma, x)
            d_u, d_c = self.den(torch.cat([x, x]), torch.cat([s, s]), both).chunk(2)
        else:
            d_u, d_c = self.den(x, sigma, self.uncond), self.den(x, sigma, cond)
        return d_u + self.scale * (d_c - d_u)


class InputCFG:
    """CFG with a per-sample scale read from the condition: D(x, sigma, {"y": labels, "w": [B]}) = D_u + w (D_c -
    D_u). The teacher of guided distillation (LCM, Luo et al. 2023, Eq. 9) then takes the student's own cond; one
    batched call per evaluation, the unconditional branch at label `null` (None: the network's null label)."""

    def __init__(self, den: Any, null: int | None = None) -> None:
        check_denoiser(den)
        self.den, self.null = den, null
        self.sigma_min, self.sigma_max = den.sigma_min, den.sigma_max
        self.shape = getattr(den, "shape", None)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        if not isinstance(cond, dict) or "w" not in cond:
            return self.den(x, sigma, cond.get("y") if isinstance(cond, dict) else cond)
        y, w = cond["y"], torch.as_tensor(cond["w"], device=x.device, dtype=x.dtype)
        if self.null is None:
            d_u, d_c = self.den(x, sigma, None), self.den(x, sigma, y)
        else:
            s = batch_sigma(sigma, x)
            d_u, d_c = self.den(torch.cat([x, x]), torch.cat([s, s]),
                                torch.cat([torch.full_like(y, self.null), y])).chunk(2)
        return d_u + append_dims(w.expand(x.shape[0]), x.ndim) * (d_c - d_u)


def cfg(den: Any, scale: float, uncond: Any = None, batched: bool = True) -> CFG:
    """Wrap `den` with classifier-free guidance of weight `scale` and unconditional cond `uncond` (Ho & Salimans)."""
    return CFG(den, scale, uncond, batched)
