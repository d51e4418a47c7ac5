"""The one diffusers driver: run a diffusers scheduler on a fewstep problem (x_T at sigma_max, a VE denoiser D).

Used by `fewstep bench solvers`, `fewstep bench search` (through `solvers.diffusers_errors`) and the equality
tests in tests/solvers/test_diffusers.py. A scheduler is a VP discrete model with prediction_type="sample": at
grid point k it is given x_VP = alpha_k x_VE and D(x_VE, sigma_k), alpha = 1/sqrt(1 + sigma^2).

Like-for-like: `make(..., table=VPDiscrete.spanning(sigma_min, sigma_max))` hands the scheduler linear
`trained_betas` whose chain runs exactly from sigma_min (t=0) to sigma_max (t=T-1) and replaces its float32
alphas_cumprod by the float64 table, so every timestep spacing starts at the problem's x_T: "linspace"/"trailing"
at t=T-1, Karras / Lu lambdas / exponential over [sigma_min, sigma_max]. ("leading" starts below sigma_max and
is left out; so is any setting that would need x_T at another sigma.)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..noise import VPDiscrete

SIGMA_MINS = (0.002, 0.01, 0.03)

_DPM = {"": {}, "trailing": {"timestep_spacing": "trailing"}, "karras": {"use_karras_sigmas": True},
        "lu": {"use_lu_lambdas": True}}
_GRID = {"": {}, "trailing": {"timestep_spacing": "trailing"}, "karras": {"use_karras_sigmas": True}}


def variants() -> dict[str, tuple[str, dict[str, Any]]]:
    """label -> (diffusers class, config): the few-step settings people use, each with final sigma 0 or sigma_min."""
    out: dict[str, tuple[str, dict[str, Any]]] = {
        "DDIM(trailing)": ("DDIMScheduler", {"clip_sample": False, "timestep_spacing": "trailing"})}
    finals = {"": {}, "+smin": {"final_sigmas_type": "sigma_min"}}
    for order in (2, 3):
        for g, cfg in _DPM.items():
            for f, fcfg in finals.items():
                out[f"DPM++{order}M{'+' + g if g else ''}{f}"] = (
                    "DPMSolverMultistepScheduler", {"solver_order": order, **cfg, **fcfg})
        for bh in ("bh1", "bh2"):
            for g, cfg in _GRID.items():
                for f, fcfg in finals.items():
                    if bh == "bh1" and not f:  # B(h) = -h = -inf on the step to 0: NaN in diffusers
                        continue
                    out[f"UniPC-{bh}{'' if order == 2 else '-o3'}{'+' + g if g else ''}{f}"] = (
                        "UniPCMultistepScheduler", {"solver_type": bh, "solver_order": order, **cfg, **fcfg})
        for g, cfg in _GRID.items():
            out[f"DEIS-{order}{'+' + g if g else ''}"] = ("DEISMultistepScheduler", {"solver_order": order, **cfg})
    return out


def make(cls_name: str, table: VPDiscrete | None = None, **config: Any) -> Any:
    """A diffusers scheduler with prediction_type="sample"; with `table`, its betas and a float64 alphas_cumprod."""
    import diffusers

    kw: dict[str, Any] = {"prediction_type": "sample", **config}
    if table is not None:
        kw.update(trained_betas=table.betas.tolist(), num_train_timesteps=len(table.alphas_cumprod))
    sched = getattr(diffusers, cls_name)(**kw)
    if table is not None:
        acp = table.alphas_cumprod.clone()
        sched.alphas_cumprod = acp
        if hasattr(sched, "alpha_t"):
            sched.alpha_t, sched.sigma_t = acp.sqrt(), (1 - acp).sqrt()
            sched.lambda_t = sched.alpha_t.log() - sched.sigma_t.log()
    return sched


def grid(sched: Any) -> list[float]:
    """VE sigmas the scheduler steps through after set_timesteps. DDIM: sigma(t_k), then its last step's
    prev_timestep t - T // n (diffusers DDIMScheduler.step), which is data (sigma 0) when < 0."""
    if type(sched).__name__ == "DDIMScheduler":
        acp = sched.alphas_cumprod
        ts = sched.timesteps.tolist()
        prev = ts[-1] - sched.config.num_train_timesteps // sched.num_inference_steps
        end = acp[prev] if prev >= 0 else sched.final_alpha_cumprod
        return [math.sqrt((1 - acp[t]) / acp[t]) for t in ts] + [math.sqrt((1 - end) / end)]
    return [float(v) for v in sched.sigmas]


def drive(sched: Any, den: Any, noise: Tensor, n_steps: int, vp: bool = True, cond: Any = None,
          float64: bool = True) -> tuple[Tensor, list[float]]:
    """Run n_steps of `sched` from x_T = noise * sigma_0 with D as a 'sample' model; return (x at the end in VE,
    the grid). float64 casts the scheduler's tables so its coefficient maths is float64 (equality tests)."""
    sched.set_timesteps(n_steps)
    if float64:
        for attr in ("sigmas", "alphas_cumprod"):
            if torch.is_tensor(getattr(sched, attr, None)):
                setattr(sched, attr, getattr(sched, attr).to(torch.float64))
        if hasattr(sched, "final_alpha_cumprod"):
            sched.final_alpha_cumprod = torch.as_tensor(sched.final_alpha_cumprod, dtype=torch.float64)
    sig = grid(sched)
    scale = (lambda s: 1 / math.sqrt(1 + s**2)) if vp else (lambda s: 1.0)
    x = noise * sig[0] * scale(sig[0])
    for k, t in enumerate(sched.timesteps):
        s = sig[k]
        D = den(x / scale(s), torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device), cond)
        x = sched.step(D.to(x.dtype), t, x).prev_sample
    return x / scale(sig[-1]), sig


def solve(label: str, den: Any, x_T: Tensor, n_steps: int, sigma_max: float, sigma_min: float,
          cond: Any = None, float64: bool = True) -> Tensor:
    """x0 of diffusers' `label` (see variants()) from the problem's x_T at sigma_max, on the spanning table."""
    cls_name, cfg = variants()[label]
    sched = make(cls_name, VPDiscrete.spanning(sigma_min, sigma_max), **cfg)
    x, sig = drive(sched, den, x_T / sigma_max, n_steps, cond=cond, float64=float64)
    if abs(sig[0] / sigma_max - 1) > 1e-6:  # a like-for-like guard: diffusers must start where x_T is
        raise AssertionError(f"{label} starts at sigma {sig[0]}, not the problem's {sigma_max}")
    return x


def rms(a: Tensor, b: Tensor) -> float:
    v = (a.double() - b.double()).pow(2).mean().sqrt().item()
    return v if math.isfinite(v) else float("nan")


def errors(den: Any, x_T: Tensor, ref: Tensor, nfe: int, sigma_max: float | None = None,
           sigma_mins: tuple[float, ...] = SIGMA_MINS) -> dict[str, float]:
    """RMS error vs `ref` of every diffusers variant x table sigma_min at this NFE (one step = one NFE)."""
    hi = float(sigma_max if sigma_max is not None else den.sigma_max)
    out = {}
    for smin in sigma_mins:
        for label in variants():
            with torch.no_grad():
                x = solve(label, den, x_T.double(), nfe, hi, smin)
            out[f"{label}/{smin}"] = rms(x, ref)
    return out
