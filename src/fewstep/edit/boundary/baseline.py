"""The learned-direction baseline (Asyrp, Kwon et al., ICLR 2023): a small network f_t(h) that shifts the
bottleneck h at every regeneration step, h_t <- h_t + s f_t(h_t) with s = +-1 the edit direction, trained with the
frozen diffusion model by backpropagating through the regeneration. Asyrp's loss is CLIP's directional loss plus an
L1 term to the unedited result; here the attribute's own differentiable measurer replaces CLIP (a hinge that asks
the measured attribute to cross the median by `margin` spreads) and L2 keeps the image (its lambda_recon).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ...solvers.engine import sample
from .hook import Bottleneck, middle_block
from .latents import edit_plan, invert_to


class Direction(nn.Module):
    """Asyrp's f_t: 1x1 conv -> SiLU (with a sigma embedding) -> zero-initialised 1x1 conv on h [B, C, H, W]."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.inp, self.t = nn.Conv2d(channels, hidden, 1), nn.Linear(1, hidden)
        self.out = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor, sigma: Tensor) -> Tensor:
        e = self.t(sigma.reshape(-1, 1).to(h.dtype).log())[:, :, None, None]
        return self.out(torch.nn.functional.silu(self.inp(h) + e))


def _channels(den: Any) -> int:
    mod = middle_block(den)
    convs = [m for m in mod.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _shifted(den: Any, f: Direction, x_t: Tensor, s: Tensor, plan: Any) -> Tensor:
    sig = {"v": None}

    def edit(h: Tensor, _: Any) -> Tensor:
        return h + s[:, None, None, None] * f(h, sig["v"].expand(len(h)))

    def den_s(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        sig["v"] = sigma.reshape(-1)[:1].float()
        return den(x, sigma, cond)

    den_s.sigma_min, den_s.sigma_max = den.sigma_min, den.sigma_max  # type: ignore[attr-defined]
    with Bottleneck(den) as hb:
        hb.edit = edit
        return sample(den_s, x_t, plan)


def train(den: Any, images: Tensor, attribute: Callable[[Tensor], Tensor], median: float, sigma: float,
          plan: dict[str, Any], steps: int = 150, batch: int = 32, lr: float = 1e-3, margin: float = 1.0,
          lam: float = 1.0, seed: int = 0) -> tuple[Direction, dict[str, Any]]:
    """Train f on `images` (no labels: each image is pushed to the other side of `median` of the differentiable
    `attribute`); regeneration with the edit plan from `sigma`. Returns (f, {seconds, steps, loss})."""
    t0 = time.perf_counter()
    p = edit_plan(den, sigma, int(plan["nfe"]), plan["name"], float(plan["sigma_min"]), plan["grid"])
    for q in den.parameters():
        q.requires_grad_(False)
    with torch.no_grad():
        x_t = invert_to(den, images, p)
        a0 = attribute(images)
        spread = float(a0.std()) or 1.0
        side = torch.where(a0 > median, -1.0, 1.0)
        plain = sample(den, x_t, p)
    f = Direction(_channels(den))
    opt = torch.optim.Adam(f.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    loss_v = float("nan")
    for _ in range(steps):
        i = torch.randint(len(images), (batch,), generator=g)
        out = _shifted(den, f, x_t[i], side[i], p)
        cross = side[i] * (attribute(out) - median) / spread
        loss = torch.relu(margin - cross).mean() + lam * (out - plain[i]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
    return f.eval(), {"seconds": time.perf_counter() - t0, "steps": steps, "batch": batch, "loss": loss_v}


@torch.no_grad()
def apply(den: Any, f: Direction, images: Tensor, direction: Tensor, sigma: float, plan: dict[str, Any]) -> Tensor:
    """Edit real images with a trained f: invert to sigma, regenerate with h_t + s f_t(h_t) at every step."""
    p = edit_plan(den, sigma, int(plan["nfe"]), plan["name"], float(plan["sigma_min"]), plan["grid"])
    return _shifted(den, f, invert_to(den, images, p), direction.to(images.dtype), p)
