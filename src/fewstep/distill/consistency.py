"""Consistency models: the student, the distances, the CD / CT / iCT objective.

Song et al. (2023), "Consistency Models", Alg. 2 (CD) and Alg. 3 (CT), Eq. 7 (L_CD), Eq. 10 (L_CT);
Song & Dhariwal (2024), "Improved Techniques for Training Consistency Models" (iCT: pseudo-Huber with
c = 0.00054 sqrt(d), lognormal noise, 1/(sigma_{n+1} - sigma_n) weighting, exponential N(k), no EMA teacher).
DMD trains the same student's one-step map by distribution matching (fewstep.distill.dmd).
The student is a denoiser f(x, sigma) -> x0 with the boundary parameterisation fewstep.precond.consistency.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..denoiser import append_dims
from ..io import build_denoiser
from ..train.objective import Objective
from . import schedules as S
from .config import DISTANCES, MODES, ConsistencyConfig
from .distances import distance
from .regression import ode_regression, pair_regression
from .teacher import teacher_path

__all__ = ["DISTANCES", "MODES", "ConsistencyConfig", "ConsistencyObjective", "consistency_loss", "distance",
           "make_student", "ode_regression", "student_config"]


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


class ConsistencyObjective(Objective):
    """The per-step CD / CT / iCT objective of fewstep.train.loop: picks N(k), mu(k) and the sigma pairs, keeps the
    target network theta^- (EMA with rate mu, or the online net itself when mu = 0: stop-gradient)."""

    def __init__(self, cfg: ConsistencyConfig, total_steps: int, teacher: Any = None, bank: Tensor | None = None
                 ) -> None:
        if cfg.uses_teacher and teacher is None:
            raise ValueError(f"mode {cfg.mode!r} needs a teacher denoiser (--teacher); use --mode ict to train from "
                             "scratch")
        self.cfg, self.teacher = cfg, teacher if cfg.uses_teacher else None
        self.reg = pair_regression(cfg, bank)
        self.K = cfg.horizon or total_steps
        self.target: nn.Module | None = None
        self.online: nn.Module | None = None

    def setup(self, model: nn.Module) -> None:
        """Remember the online network, whose structure a resumed EMA target is rebuilt around."""
        self.online = model

    def schedule(self, k: int) -> tuple[int, float]:
        """(N(k), mu(k)) at training step k: fixed for CD, CM App. C for CT, iCT's doubling with mu = 0."""
        c = self.cfg
        if c.mode == "cd":
            return c.N, c.mu
        if c.mode == "ct":
            N = S.ct_scales(k, self.K, c.s0, c.s1)
            return N, S.ct_mu(N, c.s0, c.mu0)
        return S.ict_scales(k, self.K, c.s0, c.s1), 0.0

    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        """The CD / CT / iCT loss at a random pair of adjacent grid points (or `skip` apart), against the target
        network for this step (Eq. 7 / Eq. 10), plus the ODE-pair regression for reg > 0."""
        c = self.cfg
        N, mu = self.schedule(step)
        grid = S.cm_grid(N, c.sigma_min, c.sigma_max, c.rho).to(x0.device)
        probs = S.ict_index_probs(grid, c.P_mean, c.P_std) if c.mode == "ict" else None
        n = S.sample_indices(N - c.skip + 1, x0.shape[0], generator, x0.device, probs)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        online = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        target = self.target if (mu > 0 and self.target is not None) else online
        via = grid[n[:, None] + torch.arange(c.skip - 1, 0, -1, device=n.device)]  # [B, skip-1], descending
        loss = consistency_loss(model, target, x0, grid[n + c.skip], grid[n], z, self.teacher, c.solver, cond, c.dist,
                                c.weight, c.c, c.sigma_data, via)
        return loss if self.reg is None else loss + self.reg(model, x0.shape[0], generator)

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
        """The EMA target theta^- (None under stop-gradient), for exact resume."""
        return {"target": None if self.target is None else self.target.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild a saved EMA target around the online network at once (setup(model) comes first)."""
        saved, self.target = state.get("target"), None
        if saved is not None:
            if self.online is None:
                raise RuntimeError("ConsistencyObjective.load_state_dict needs setup(model) first (the loop calls it)")
            self.target = copy.deepcopy(self.online).requires_grad_(False)
            self.target.load_state_dict(saved)
