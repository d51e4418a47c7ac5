"""Distribution matching for a one-step generator: DMD's KL gradient with an online "fake" denoiser.

Yin et al. (2024), "One-step Diffusion with Distribution Matching Distillation", Eq. 7 (the gradient
(s_fake - s_real) through the generator, at noised samples x_t = x + sigma n), Eq. 8 (the weight w_t =
sigma^2 / mean|x - mu_real(x_t)|, which in x0 coordinates turns the score difference into
(mu_fake - mu_real) / mean|x - mu_real|) and Alg. 1 (the fake denoiser, initialised from the teacher and
trained by the denoising loss on the generator's current samples, one step per generator step), with the ODE-pair
regression of Eq. 6 (fewstep.distill.regression). The student is a consistency model (fewstep.distill.consistency),
usually a CD student trained further (--init).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from ..denoiser import append_dims
from ..grids import karras_at
from ..io import build_denoiser
from ..train.aux import AuxNet
from ..train.losses import edm_loss
from ..train.objective import Objective
from .config import DMDConfig
from .regression import pair_regression

__all__ = ["DMDConfig", "DMDObjective", "FakeScore", "dm_loss", "dm_sigmas"]

QUANTILES = (0.02, 0.98)  # DMD's t ~ U[0.02 T, 0.98 T], here as positions on the Karras sigma ramp


def dm_sigmas(batch: int, generator: torch.Generator, sigma_min: float, sigma_max: float, rho: float,
              device: torch.device) -> Tensor:
    """sigma at a uniform position u in QUANTILES along the rho-ramp from sigma_max down to sigma_min [B]."""
    lo, hi = QUANTILES
    u = lo + (hi - lo) * torch.rand(batch, generator=generator, device=generator.device, dtype=torch.float64)
    return karras_at(u, sigma_min, sigma_max, rho).to(device)


def dm_loss(x: Tensor, real: Any, fake: Any, cond: Any, generator: torch.Generator, sigma_min: float,
            sigma_max: float, rho: float = 7.0) -> Tensor:
    """Per sample 0.5 ||x - stopgrad(x - g)||^2 / d, whose gradient with respect to the samples x is g / d with
    g = (mu_fake(x_t) - mu_real(x_t)) / mean|x - mu_real(x_t)|: DMD's weighted KL gradient (Eq. 7-8)."""
    sigma = dm_sigmas(x.shape[0], generator, sigma_min, sigma_max, rho, x.device)
    with torch.no_grad():
        n = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_t = x.detach() + append_dims(sigma, x.ndim).to(x.dtype) * n
        mu_real, mu_fake = real(x_t, sigma, cond), fake(x_t, sigma, cond)
        norm = (x.detach() - mu_real).abs().flatten(1).mean(1).clamp_min(1e-8)
        g = (mu_fake - mu_real) / append_dims(norm, x.ndim)
    return 0.5 * (x - (x - g).detach()).square().flatten(1).mean(1)


class FakeScore(AuxNet):
    """DMD's mu_fake: an auxiliary network (fewstep.train.aux) holding a copy of the teacher, trained online by the
    EDM denoising loss on the generator's samples with its own Adam (Alg. 1)."""

    def __init__(self, teacher: nn.Module, lr: float) -> None:
        if not isinstance(teacher, nn.Module) or not hasattr(teacher, "config"):
            raise ValueError("distribution matching (mode 'dmd') copies the teacher's network into the fake denoiser; "
                             "it needs a fewstep teacher network (a zoo name or a saved model), not "
                             f"{type(teacher).__name__}")
        device = next(teacher.parameters()).device
        state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
        net = build_denoiser(teacher.config, state).to(device).train().requires_grad_(True)
        super().__init__("fake", net, functools.partial(torch.optim.Adam, lr=lr))

    def update(self, x: Tensor, cond: Any, generator: torch.Generator) -> float:
        """One optimiser step of the denoising loss on samples x (detached from the generator)."""
        return self.step(edm_loss(self.module, x.detach(), cond, generator).mean())


class DMDObjective(Objective):
    """DMD (Yin et al. 2024, Alg. 1) for fewstep.train.loop: the distribution-matching loss of the one-step samples
    f(sigma_max z, sigma_max), then one step of the fake denoiser on the same samples, plus the ODE-pair
    regression for reg > 0. The data x0 only sets the batch's shape: DMD needs no training images."""

    def __init__(self, cfg: DMDConfig, teacher: Any, bank: Tensor | None = None) -> None:
        if teacher is None:
            raise ValueError("DMD needs a teacher denoiser (--teacher): the real score, and the fake score's start")
        self.cfg, self.teacher = cfg, teacher
        self.fake = FakeScore(teacher, cfg.fake_lr)
        self.reg = pair_regression(cfg, bank)
        self.aux = [self.fake]

    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        c = self.cfg
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = model(c.sigma_max * z, torch.full((x0.shape[0],), c.sigma_max, dtype=torch.float64, device=x0.device),
                  cond)
        loss = dm_loss(x, self.teacher, self.fake, cond, generator, c.sigma_min, c.sigma_max, c.rho)
        self.fake.update(x, cond, generator)
        loss = loss.to(x0.dtype)
        return loss if self.reg is None else loss + self.reg(model, x0.shape[0], generator)
