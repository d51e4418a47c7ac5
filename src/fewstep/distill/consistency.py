"""Consistency models: the student, the distances, the CD / CT / iCT objective.

Song et al. (2023), "Consistency Models", Alg. 2 (CD) and Alg. 3 (CT), Eq. 7 (L_CD), Eq. 10 (L_CT);
Song & Dhariwal (2024), "Improved Techniques for Training Consistency Models" (iCT: pseudo-Huber with
c = 0.00054 sqrt(d), lognormal noise, 1/(sigma_{n+1} - sigma_n) weighting, exponential N(k), no EMA teacher);
mode 'dmd' trains the same student's one-step map by distribution matching, Yin et al. (2024) (fewstep.distill.dmd).
The student is a denoiser f(x, sigma) -> x0 with the boundary parameterisation fewstep.precond.consistency.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..denoiser import append_dims
from ..io import build_denoiser
from . import schedules as S
from .dmd import FakeScore, dm_loss
from .teacher import teacher_path

MODES = ("cd", "ct", "ict", "dmd")
TEACHER_MODES = ("cd", "dmd")
DISTANCES = ("l2", "l1", "pseudo_huber", "lpips")


def student_config(teacher_config: dict[str, Any], sigma_min: float | None = None,
                   dropout: float | None = None) -> dict[str, Any]:
    """The teacher's io config with the consistency boundary preconditioning (CM Sec. 3.1, Eq. after Eq. 3)."""
    cfg = copy.deepcopy(teacher_config)
    sd = float(cfg.get("precond", {}).get("kwargs", {}).get("sigma_data", 0.5))
    eps = float(cfg["sigma_min"] if sigma_min is None else sigma_min)
    cfg["precond"] = {"name": "consistency", "kwargs": {"sigma_min": eps, "sigma_data": sd}}
    cfg["sigma_min"] = eps
    if dropout is not None:
        cfg["net"]["kwargs"]["dropout"] = float(dropout)
    for key in ("train", "metrics"):
        cfg.pop(key, None)
    return cfg


def make_student(teacher: nn.Module, dropout: float | None = None) -> nn.Module:
    """A consistency student initialised from the teacher's network weights (CM Sec. 6, 'initialise from EDM')."""
    cfg = student_config(teacher.config, dropout=dropout)
    return build_denoiser(cfg, {k: v.detach().clone() for k, v in teacher.state_dict().items()}).train()


def distance(name: str, a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """d(a, b) per sample: 'l2' mean squared, 'l1' mean absolute (CM code `mean_flat`), 'pseudo_huber'
    sqrt(||a - b||^2 + c^2) - c on the whole vector, c = 0.00054 sqrt(d) by default (iCT Sec. 3.3), 'lpips' the
    perceptual distance of fewstep.metrics.perceptual (CM Sec. 6's best CD runs)."""
    if name == "lpips":
        from ..metrics.perceptual import lpips

        return lpips(a, b).to(torch.float64)
    diff = (a - b).reshape(a.shape[0], -1).to(torch.float64)
    if name == "l2":
        return diff.square().mean(1)
    if name == "l1":
        return diff.abs().mean(1)
    if name == "pseudo_huber":
        c = 0.00054 * math.sqrt(diff.shape[1]) if c is None else c
        return (diff.square().sum(1) + c**2).sqrt() - c
    raise KeyError(f"unknown distance {name!r}; known: {', '.join(DISTANCES)}")


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


def consistency_loss(f: Any, f_target: Any, x0: Tensor, sigma_hi: Tensor, sigma_lo: Tensor, z: Tensor,
                     teacher: Any = None, solver: str = "heun", cond: Any = None, dist: str = "l2",
                     weight: str = "uniform", c: float | None = None, sigma_data: float = 0.5,
                     via: Tensor | None = None) -> Tensor:
    """lambda d(f(x0 + sigma_hi z, sigma_hi), stopgrad f_target(x_lo, sigma_lo)) per sample, where
    x_lo = Phi(x0 + sigma_hi z; sigma_hi -> sigma_lo) with the teacher (CD, Eq. 7; through the intermediate
    sigmas `via` [B, k-1] when it skips k grid intervals) or x0 + sigma_lo z (CT, Eq. 10).
    Dropout masks are shared between the two calls (CM code: RNG state restored before the target)."""
    x_hi = x0 + append_dims(sigma_hi, x0.ndim).to(x0.dtype) * z
    if teacher is not None:
        mid = via if via is not None else sigma_hi.new_zeros(sigma_hi.shape[0], 0)
        x_lo = teacher_path(teacher, x_hi, torch.cat([sigma_hi[:, None], mid, sigma_lo[:, None]], 1), solver, cond)
    else:
        x_lo = x0 + append_dims(sigma_lo, x0.ndim).to(x0.dtype) * z
    devices = [x0.device] if x0.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the same dropout masks for the online and the target call
        out = f(x_hi, sigma_hi, cond)
    with torch.no_grad():
        target = f_target(x_lo, sigma_lo, cond)
    lam = S.weighting(weight, sigma_hi, sigma_lo, sigma_data)
    return (lam * distance(dist, out, target.detach(), c)).to(x0.dtype)


@dataclass
class ConsistencyConfig:
    """What is trained: mode cd|ct|ict|dmd and its schedule, distance, weighting and teacher solver (JSON-able)."""

    mode: str = "cd"
    N: int = 18                 # CD grid size (fixed)
    mu: float = 0.0             # CD target EMA rate (0 = stop-gradient, as the CIFAR-10 CD runs)
    s0: int | None = None       # CT/iCT curriculum start (default 2 for ct, 10 for ict)
    s1: int | None = None       # CT/iCT curriculum end (default 150 for ct, 1280 for ict)
    mu0: float = 0.9            # CT initial target EMA rate
    dist: str | None = None     # default: l2 for cd/ct/dmd, pseudo_huber for ict
    c: float | None = None      # pseudo-Huber constant (None = 0.00054 sqrt(d))
    weight: str | None = None   # default: uniform for cd/ct, ict for ict
    solver: str = "heun"        # CD teacher step
    skip: int = 1               # CD: grid intervals the teacher spans per target (LCM's skipping step k)
    P_mean: float = -1.1
    P_std: float = 2.0
    rho: float = 7.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    horizon: int | None = None  # K of the N(k)/mu(k) curricula (None = the run's step count)
    reg: float = 0.0            # CD/DMD: weight of the ODE-pair regression onto teacher samples (0 = the CM paper)
    reg_paths: int = 20000      # CD/DMD: teacher trajectories in the regression's bank
    fake_lr: float = 1e-4       # DMD: Adam learning rate of the online fake denoiser

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        ict = self.mode == "ict"
        self.s0 = self.s0 if self.s0 is not None else (10 if ict else 2)
        self.s1 = self.s1 if self.s1 is not None else (1280 if ict else 150)
        self.dist = self.dist or ("pseudo_huber" if ict else "l2")
        self.weight = self.weight or ("ict" if ict else "uniform")
        if self.dist not in DISTANCES:
            raise ValueError(f"dist must be one of {', '.join(DISTANCES)}, got {self.dist!r}")
        if self.weight not in S.WEIGHTINGS:
            raise ValueError(f"weight must be one of {', '.join(S.WEIGHTINGS)}, got {self.weight!r}")
        if not 0 <= self.mu < 1 or not 0 <= self.mu0 < 1 or self.N < 2:
            raise ValueError("need 0 <= mu < 1, 0 <= mu0 < 1 and N >= 2")
        if not 1 <= self.skip <= (self.N - 1 if self.mode == "cd" else 1):
            raise ValueError(f"skip must be 1 for ct/ict/dmd and in 1..N-1 = {self.N - 1} for cd, got {self.skip}")
        if self.reg < 0 or (self.reg > 0 and self.mode not in TEACHER_MODES) or self.reg_paths < 1:
            raise ValueError(f"reg (the ODE-pair regression weight) must be >= 0 and needs mode 'cd' or 'dmd' (a "
                             f"teacher), and reg_paths >= 1; got reg={self.reg}, mode={self.mode!r}, "
                             f"reg_paths={self.reg_paths}")
        if self.mode == "dmd" and self.mu > 0:
            raise ValueError(f"mu (the CD target's EMA rate) has no use in mode 'dmd', which has no target network; "
                             f"leave it at 0, got {self.mu}")
        if not self.fake_lr > 0:
            raise ValueError(f"fake_lr (DMD's fake denoiser learning rate) must be > 0, got {self.fake_lr}")


class ConsistencyObjective:
    """The per-step objective plugged into fewstep.train.loop: picks N(k), mu(k) and the sigma pairs, keeps the
    target network theta^- (EMA with rate mu, or the online net itself when mu = 0: stop-gradient); for 'dmd',
    the online fake denoiser and its optimiser instead."""

    def __init__(self, cfg: ConsistencyConfig, total_steps: int, teacher: Any = None, bank: Tensor | None = None
                 ) -> None:
        if cfg.mode in TEACHER_MODES and teacher is None:
            raise ValueError(f"mode {cfg.mode!r} needs a teacher denoiser (--teacher); use --mode ict to train from "
                             "scratch")
        if cfg.reg > 0 and bank is None:
            raise ValueError("reg > 0 needs the bank of teacher trajectories (fewstep.distill.run.ode_bank)")
        self.cfg, self.teacher = cfg, teacher if cfg.mode in TEACHER_MODES else None
        self.fake = FakeScore(teacher, cfg.fake_lr) if cfg.mode == "dmd" else None
        self.bank = bank if cfg.reg > 0 else None
        self.K = cfg.horizon or total_steps
        self.target: nn.Module | None = None
        self._pending: dict[str, Any] | None = None

    def schedule(self, k: int) -> tuple[int, float]:
        """(N(k), mu(k)) at training step k: fixed for CD (and DMD's trajectory grid), CM App. C for CT, iCT's
        doubling with mu = 0."""
        c = self.cfg
        if c.mode in TEACHER_MODES:
            return c.N, c.mu
        if c.mode == "ct":
            N = S.ct_scales(k, self.K, c.s0, c.s1)
            return N, S.ct_mu(N, c.s0, c.mu0)
        return S.ict_scales(k, self.K, c.s0, c.s1), 0.0

    def __call__(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        c = self.cfg
        N, mu = self.schedule(step)
        grid = S.cm_grid(N, c.sigma_min, c.sigma_max, c.rho).to(x0.device)
        if c.mode == "dmd":
            loss = self._dmd(model, x0, cond, generator)
        else:
            loss = self._consistency(model, x0, cond, generator, grid, N, mu)
        if self.bank is None:
            return loss
        return loss + c.reg * ode_regression(model, self.bank, grid.flip(0), x0.shape[0], generator, c.dist, c.c)

    def _consistency(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, grid: Tensor,
                     N: int, mu: float) -> Tensor:
        """The CD / CT / iCT loss at a random pair of adjacent grid points (or `skip` apart), against the target
        network for this step (Eq. 7 / Eq. 10)."""
        c = self.cfg
        probs = S.ict_index_probs(grid, c.P_mean, c.P_std) if c.mode == "ict" else None
        n = S.sample_indices(N - c.skip + 1, x0.shape[0], generator, x0.device, probs)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        online = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if self._pending is not None:  # a resumed EMA target: rebuild it around the online net's structure
            self.target = copy.deepcopy(online).requires_grad_(False)
            self.target.load_state_dict(self._pending)
            self._pending = None
        target = self.target if (mu > 0 and self.target is not None) else online
        via = grid[n[:, None] + torch.arange(c.skip - 1, 0, -1, device=n.device)]  # [B, skip-1], descending
        return consistency_loss(model, target, x0, grid[n + c.skip], grid[n], z, self.teacher, c.solver, cond, c.dist,
                                c.weight, c.c, c.sigma_data, via)

    def _dmd(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator) -> Tensor:
        """DMD (Yin et al. 2024, Alg. 1): the distribution-matching loss of the one-step samples
        f(sigma_max z, sigma_max); then one step of the fake denoiser on the same samples. The data x0 only sets
        the batch's shape: DMD needs no training images."""
        c = self.cfg
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x = model(c.sigma_max * z, torch.full((x0.shape[0],), c.sigma_max, dtype=torch.float64, device=x0.device),
                  cond)
        loss = dm_loss(x, self.teacher, self.fake, cond, generator, c.sigma_min, c.sigma_max, c.rho)
        self.fake.update(x, cond, generator)
        return loss.to(x0.dtype)

    def after_step(self, model: nn.Module, step: int) -> None:
        """theta^- <- stopgrad(mu theta^- + (1 - mu) theta) (CM Alg. 2-3); a no-op copy when mu = 0."""
        _, mu = self.schedule(step)
        if mu <= 0:
            self.target = None
            return
        if self.target is None:
            self.target = copy.deepcopy(model).requires_grad_(False)
            return
        with torch.no_grad():
            for pt, p in zip(self.target.parameters(), model.parameters(), strict=True):
                pt.mul_(mu).add_(p.detach(), alpha=1 - mu)
            for bt, b in zip(self.target.buffers(), model.buffers(), strict=True):
                bt.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        """The EMA target theta^- (None under stop-gradient) and DMD's fake denoiser, for exact resume."""
        return {"target": None if self.target is None else self.target.state_dict(),
                "fake": None if self.fake is None else self.fake.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target, self._pending = None, state.get("target")
        if self.fake is not None and state.get("fake") is not None:
            self.fake.load_state_dict(state["fake"])
