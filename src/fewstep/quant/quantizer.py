"""Uniform affine quantizers: x_hat = delta (clip(round(x / delta) + z, 0, 2^b - 1) - z) (Nagel et al. 2021, Eq. 1-3),
with the clipping range searched on the Lp error (BRECQ / Q-Diffusion `Scaler.MSE`: 80 clip ratios, p = 2.4),
AdaRound's learned rounding h(V) (Nagel et al. 2020, Eq. 22-24), and activation parameters keyed by step (TFMQ-DM's
Finite Set Calibration, Huang et al. 2024, Sec. 4.3: one (delta, z) pair per time step of a finite set).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ZETA, GAMMA = 1.1, -0.1  # AdaRound's stretch of the rectified sigmoid (Nagel et al. 2020, Eq. 23)
CLIP_GRID, LP = 80, 2.4
ACT_GRID = 20  # activation clip ratios searched per (layer, step): K steps x layers searches, kept cheap


def round_ste(x: Tensor) -> Tensor:
    """round(x) with the straight-through gradient (Bengio et al. 2013)."""
    return (x.round() - x).detach() + x


def affine_params(lo: Tensor, hi: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(delta, z) of the asymmetric b-bit grid covering [lo, hi] (which is widened to hold 0)."""
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    delta = ((hi - lo) / (2**bits - 1)).clamp(min=1e-8)
    return delta, (-lo / delta).round()


def fake_quant(x: Tensor, delta: Tensor, z: Tensor, bits: int) -> Tensor:
    """delta (clip(round_ste(x / delta) + z, 0, 2^b - 1) - z): simulated quantization with an STE gradient."""
    q = (round_ste(x / delta) + z).clamp(0, 2**bits - 1)
    return (q - z) * delta


def lp_error(x: Tensor, y: Tensor, p: float, dim: tuple[int, ...] | None) -> Tensor:
    d = (x - y).abs().pow(p)
    return d.mean() if dim is None else d.mean(dim=dim)


def mse_search(x: Tensor, bits: int, channel_axis: int | None = None, grid: int = CLIP_GRID,
               p: float = LP) -> tuple[Tensor, Tensor]:
    """(delta, z) minimising the Lp error of quantizing x over clip ratios r in (0, 1] of [r min, r max], per
    channel along `channel_axis` (per tensor when None); BRECQ / Q-Diffusion's MSE scaler."""
    if channel_axis is None:
        flat = x.reshape(1, -1)
    else:
        flat = x.transpose(0, channel_axis).reshape(x.shape[channel_axis], -1)
    lo, hi = flat.min(1).values, flat.max(1).values
    best = torch.full_like(lo, float("inf"))
    delta, z = affine_params(lo, hi, bits)
    for i in range(grid):
        r = 1.0 - i / (grid + 1)
        d, zz = affine_params(lo * r, hi * r, bits)
        err = lp_error(fake_quant(flat, d[:, None], zz[:, None], bits), flat, p, (1,))
        better = err < best
        best, delta, z = torch.where(better, err, best), torch.where(better, d, delta), torch.where(better, zz, z)
    return delta, z


class WeightQuantizer(nn.Module):
    """Per-output-channel b-bit weights with MSE-searched clipping and AdaRound's learnable rounding:
    w_hat = delta (clip(floor(w / delta) + h(V) + z, 0, 2^b - 1) - z), h(V) = clip(sigmoid(V)(zeta - gamma) + gamma,
    0, 1) (Nagel et al. 2020, Eq. 22-23); `soft` uses h(V), otherwise h is rounded to {0, 1}."""

    def __init__(self, weight: Tensor, bits: int) -> None:
        super().__init__()
        self.bits = int(bits)
        delta, z = mse_search(weight.detach(), self.bits, channel_axis=0)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        self.register_buffer("delta", delta.reshape(shape))
        self.register_buffer("z", z.reshape(shape))
        self.alpha: nn.Parameter | None = None
        self.soft = False

    def init_adaround(self, weight: Tensor) -> None:
        """V with h(V) equal to the fractional part of w / delta, so rounding starts at round-to-nearest's input."""
        rest = weight.detach() / self.delta - (weight.detach() / self.delta).floor()
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.soft = True

    def h(self) -> Tensor:
        assert self.alpha is not None
        return (torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

    def forward(self, w: Tensor) -> Tensor:
        if self.alpha is None:
            return fake_quant(w, self.delta, self.z, self.bits)
        h = self.h() if self.soft else (self.alpha >= 0).to(w.dtype)
        q = ((w / self.delta).floor() + h + self.z).clamp(0, 2**self.bits - 1)
        return (q - self.z) * self.delta

    def round_loss(self, beta: float) -> Tensor:
        """AdaRound's regulariser sum(1 - |2 h(V) - 1|^beta) (Nagel et al. 2020, Eq. 24)."""
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()


class ActQuantizer(nn.Module):
    """Per-tensor b-bit activations with K parameter sets: set k (the current plan step, FSC) quantizes; K = 1 is
    one set for all steps (Q-Diffusion). `delta` can be learnt (LSQ-style, Esser et al. 2020) by reconstruction."""

    def __init__(self, bits: int, keys: int = 1) -> None:
        super().__init__()
        self.bits, self.keys = int(bits), int(keys)
        self.delta = nn.Parameter(torch.ones(keys), requires_grad=False)
        self.register_buffer("z", torch.zeros(keys))
        self.register_buffer("ready", torch.zeros(keys, dtype=torch.bool))

    def calibrate(self, k: int, x: Tensor) -> None:
        """Set parameter set k from samples x by the MSE clip search."""
        d, z = mse_search(x.detach().float(), self.bits, grid=ACT_GRID)
        self.delta.data[k], self.z[k], self.ready[k] = d[0], z[0], True

    def forward(self, x: Tensor, k: int) -> Tensor:
        k = k if self.keys > 1 else 0
        if not bool(self.ready[k]):
            return x
        return fake_quant(x, self.delta[k], self.z[k], self.bits)
