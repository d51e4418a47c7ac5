"""One PF-ODE step of the teacher from sigma_{n+1} to sigma_n with a per-sample sigma (CD's Phi, CM Alg. 2).

Consistency distillation draws a different pair (sigma_{n+1}, sigma_n) for each sample, while an engine plan has
one sigma grid per batch. So every distinct pair gets its own one-step plan (fewstep.solvers), all of them run
by the engine in lockstep: their denoiser requests are gathered into one batched call with per-sample sigmas.
The step is the engine's own; nothing of a solver is restated here.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import torch
from torch import Tensor

from ..solvers import engine
from ..solvers.constructors import get as get_plan

# Plan constructors that take one step from sigma_{n+1} to sigma_n, and the evaluations that step spends. A
# singlestep DPM-Solver-k step spans k grid intervals (diffusers' layout), placed evenly in lambda = -log sigma.
ONE_STEP_NFE: dict[str, int] = {"euler": 1, "ddim": 1, "heun": 2, "dpm_solver_2s": 2, "dpm_solver_pp_2s": 2,
                                "dpm_solver_3s": 3, "dpm_solver_pp_3s": 3}


def one_step_plan(solver: str, s: float, t: float) -> Any:
    """The engine plan of `solver` that steps once from sigma s to sigma t > 0."""
    nfe = ONE_STEP_NFE[solver]
    if "_solver_" not in solver:
        return get_plan(solver, nfe=nfe, sigmas=[s, t])
    sigmas = [s ** (1 - q / nfe) * t ** (q / nfe) for q in range(nfe + 1)]
    return get_plan(solver, nfe=nfe, sigmas=sigmas, lower_order_final=False)


def _lockstep(den: Any, x: Tensor, groups: list[Tensor], runs: list[Generator], cond: Any) -> Tensor:
    """Drive engine runs (one per index group of the batch) together: one batched denoiser call per round."""
    requests = [next(r) for r in runs]
    out = torch.empty_like(x)
    while requests:
        xb, sb = torch.empty_like(x), torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        for g, (xg, sg) in zip(groups, requests, strict=True):
            xb[g], sb[g] = xg, sg
        D = den(xb, sb, cond)
        nxt = []
        for g, r in zip(groups, runs, strict=True):
            try:
                nxt.append(r.send(D[g]))
            except StopIteration as stop:  # one-step plans of one constructor all end in the same round
                out[g] = stop.value
        requests = nxt
    return out


def teacher_step(den: Any, x: Tensor, sigma_from: Tensor, sigma_to: Tensor, solver: str = "heun",
                 cond: Any = None) -> Tensor:
    """Phi(x, sigma_from -> sigma_to; teacher) with per-sample sigmas [B] (CM Alg. 2, line 'x_hat_{t_n}'),
    by the engine step of the plan constructor `solver` (Heun by default, as the CM paper's CD runs)."""
    if solver not in ONE_STEP_NFE:
        raise KeyError(f"unknown teacher solver {solver!r}; known: {', '.join(ONE_STEP_NFE)}")
    pairs = torch.stack([sigma_from, sigma_to], 1).to(device="cpu", dtype=torch.float64)
    uniq, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    groups = [(inverse == k).nonzero().squeeze(1).to(x.device) for k in range(len(uniq))]
    runs = [engine.run(one_step_plan(solver, *pair.tolist()), x[g]) for pair, g in zip(uniq, groups, strict=True)]
    with torch.no_grad():
        return _lockstep(den, x, groups, runs, cond)


def teacher_path(den: Any, x: Tensor, path: Tensor, solver: str = "heun", cond: Any = None) -> Tensor:
    """Phi along path [B, k+1] (descending sigmas per sample): k teacher steps, e.g. LCM's skipping step (Luo et
    al. 2023, Sec. 4.3), which lets the target lie k grid intervals below the student's sigma."""
    for j in range(path.shape[1] - 1):
        x = teacher_step(den, x, path[:, j], path[:, j + 1], solver, cond)
    return x


def teacher_trajectories(den: Any, x_T: Tensor, grid: Tensor, solver: str = "heun", cond: Any = None,
                         batch: int = 1000) -> Tensor:
    """States [B, len(grid), ...] of the teacher's PF-ODE from x_T at grid[0] through each point of the descending
    `grid`, one `teacher_step` per interval (the CD grid with Heun is the 35-NFE Heun sampler); the last state is
    the teacher's sample, the target of an ODE-pair regression (Luhman & Luhman 2021)."""
    states = x_T.new_empty(x_T.shape[0], len(grid), *x_T.shape[1:])
    for i in range(0, x_T.shape[0], batch):
        x = x_T[i:i + batch]
        states[i:i + batch, 0] = x
        c = cond[i:i + batch] if isinstance(cond, Tensor) else cond
        for j in range(len(grid) - 1):
            s = grid[j:j + 2].to(x.device, torch.float64)[:, None].expand(2, x.shape[0])
            x = teacher_step(den, x, s[0], s[1], solver, c)
            states[i:i + batch, j + 1] = x
    return states
