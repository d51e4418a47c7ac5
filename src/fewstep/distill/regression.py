"""The ODE-pair regression shared by CD and DMD: pin the student's map to the teacher's PF-ODE solution on stored
teacher trajectories (Luhman & Luhman 2021; DMD's L_reg, Yin et al. 2024, Eq. 6)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import schedules as S
from .distances import distance


def ode_regression(f: Any, bank: Tensor, grid: Tensor, batch: int, generator: torch.Generator, dist: str = "l2",
                   c: float | None = None) -> Tensor:
    """d(f(x_j, sigma_j), x_end) per sample for `batch` draws from a bank [M, len(grid), ...] of teacher ODE states
    on the descending `grid` (fewstep.distill.teacher.teacher_trajectories): half at sigma_max, the one-step map,
    half at a uniform grid point, with the null label as the bank's. It pins f to the teacher's ODE solution, which
    CD's chain of local targets only reaches through N bootstrapped steps (Luhman & Luhman 2021; DMD's L_reg, Yin et
    al. 2024, Eq. 6)."""
    dev, gdev = bank.device, generator.device
    m = torch.randint(bank.shape[0], (batch,), generator=generator, device=gdev).to(dev)
    j = torch.randint(bank.shape[1] - 1, (batch,), generator=generator, device=gdev)
    j = torch.where(torch.rand(batch, generator=generator, device=gdev) < 0.5, 0, j).to(dev)
    out = f(bank[m, j], grid.to(dev, torch.float64)[j], None)
    return distance(dist, out, bank[m, -1], c).to(bank.dtype)


class ODEPairRegression:
    """reg * ode_regression(f, bank, ...) on the descending N-point CD grid: the term a config's `reg`, `N`, `dist`,
    `c`, `sigma_min`, `sigma_max`, `rho` describe (ConsistencyConfig for CD, DMDConfig)."""

    def __init__(self, cfg: Any, bank: Tensor) -> None:
        self.weight, self.bank, self.dist, self.c = cfg.reg, bank, cfg.dist, cfg.c
        self.grid = S.cm_grid(cfg.N, cfg.sigma_min, cfg.sigma_max, cfg.rho).flip(0)

    def __call__(self, f: Any, batch: int, generator: torch.Generator) -> Tensor:
        return self.weight * ode_regression(f, self.bank, self.grid, batch, generator, self.dist, self.c)


def pair_regression(cfg: Any, bank: Tensor | None) -> ODEPairRegression | None:
    """The regression term of `cfg` (None when cfg.reg == 0); reg > 0 needs the bank (fewstep.distill.run.ode_bank)."""
    if cfg.reg <= 0:
        return None
    if bank is None:
        raise ValueError("reg > 0 needs the bank of teacher trajectories (fewstep.distill.run.ode_bank)")
    return ODEPairRegression(cfg, bank)
