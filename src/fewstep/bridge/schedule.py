"""A diffusers scheduler config read as a fewstep noise process: VE sigma <-> model timestep, alpha, precond.

VP schedulers (DDPM/DDIM/DPM-Solver/...): x_vp = sqrt(abar_t) x0 + sqrt(1 - abar_t) n, so sigma = sqrt((1-abar)/abar)
and the model timestep is the continuous training index t(sigma) of `VPDiscrete` (Ho et al. 2020; k-diffusion's
DiscreteSchedule). Flow-matching schedulers (FlowMatchEulerDiscrete, `use_flow_sigmas`): x_t = (1-t) x0 + t n, the
model timestep is t * num_train_timesteps with t = sigma / (1 + sigma) (Esser et al. 2024, Sec. 3). EDM schedulers
(EDMEulerScheduler, EDMDPMSolverMultistepScheduler): VE, the model sees c_in x and c_noise = ln(sigma) / 4 and
its output is EDM's F (Karras et al. 2022, Table 1, "epsilon" in diffusers' naming). The scheduler's
`shift` only reshapes the inference grid (t -> shift t / (1 + (shift-1) t)); it never changes the t the model sees,
so here it only sets sigma_min (the shifted smallest training t). Imports diffusers lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .. import precond as P
from ..noise import VE, NoiseProcess, RectifiedFlow, VPDiscrete

PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v", "flow_prediction": "flow", "flow": "flow"}
_FLOW_T_MAX = 0.999  # t = 1 is sigma = inf; RectifiedFlow's default upper end
_ZERO_SNR_ACP = 2.0**-24  # what diffusers' Euler/DPM/UniPC schedulers put in place of alphas_cumprod[-1] = 0


def config_dict(config: Any) -> dict[str, Any]:
    """The public part of a diffusers config or scheduler (plus `_class_name`) as a plain JSON-able dict."""
    out = {}
    if hasattr(config, "config") and not isinstance(config, dict):  # a scheduler object: its config lacks the class
        out["_class_name"] = type(config).__name__
        config = config.config
    for k, val in dict(config).items():
        if k.startswith("_") and k != "_class_name":
            continue
        try:
            json.dumps(val)
        except TypeError:
            val = val.tolist() if hasattr(val, "tolist") else str(val)
        out[k] = val
    return out


def is_flow_config(config: dict[str, Any]) -> bool:
    """True for rectified-flow schedulers: FlowMatch*, `use_flow_sigmas`, or prediction_type flow_prediction."""
    return (
        str(config.get("_class_name", "")).startswith("FlowMatch")
        or bool(config.get("use_flow_sigmas", False))
        or config.get("prediction_type") in ("flow_prediction", "flow")
    )


def is_edm_config(config: dict[str, Any]) -> bool:
    """True for diffusers' EDM schedulers (EDMEulerScheduler, EDMDPMSolverMultistepScheduler)."""
    return str(config.get("_class_name", "")).startswith("EDM")


@dataclass(frozen=True)
class TrainSchedule:
    """The training noise schedule of a diffusers model, in fewstep terms (sigma is VE throughout)."""

    process: NoiseProcess
    prediction_type: str
    num_train_timesteps: int
    round_timesteps: bool = False
    learned_variance: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    sigma_data: float | None = None  # EDM schedulers only: the model is EDM-preconditioned with this sigma_data

    @property
    def is_flow(self) -> bool:
        return isinstance(self.process, RectifiedFlow)

    @property
    def sigma_min(self) -> float:
        return self.process.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.process.sigma_max

    def timestep(self, sigma: Tensor | float) -> Tensor:
        """The model's (continuous) timestep at VE noise level sigma; rounded only if `round_timesteps`."""
        if self.sigma_data is not None:  # EDM: c_noise = ln(sigma) / 4 (diffusers' precondition_noise)
            return 0.25 * torch.as_tensor(sigma, dtype=torch.float64).log()
        dev = sigma.device if torch.is_tensor(sigma) else torch.device("cpu")
        t = self.process.t(sigma.cpu() if torch.is_tensor(sigma) else sigma).to(dev)  # the tables live on the CPU
        if self.is_flow:
            t = t * self.num_train_timesteps
        return t.round() if self.round_timesteps else t

    def alpha(self, sigma: Tensor | float) -> Tensor:
        """x_native = alpha(sigma) * x_VE (sqrt(abar) for VP, 1 - t for flow)."""
        return self.process.alpha(sigma)

    def precond(self) -> P.Precond:
        """The preconditioning of this prediction type with c_noise = the model timestep (precond.py, Eq. 7)."""
        if self.sigma_data is not None:
            return P.edm(self.sigma_data)
        return P.get(PREDICTION_TYPES[self.prediction_type], c_noise=lambda s: self.timestep(s))


def schedule_from_config(
    config: Any, prediction_type: str | None = None, round_timesteps: bool = False
) -> TrainSchedule:
    """Read a diffusers scheduler config (dict, FrozenDict or scheduler object) as a `TrainSchedule`."""
    cfg = config_dict(config)
    pt = prediction_type or cfg.get("prediction_type") or ("flow_prediction" if is_flow_config(cfg) else "epsilon")
    if pt not in PREDICTION_TYPES:
        raise ValueError(
            f"unsupported prediction_type {pt!r}; fewstep reads {', '.join(PREDICTION_TYPES)}; pass prediction_type="
        )
    n = int(cfg.get("num_train_timesteps", 1000))
    if is_edm_config(cfg):
        if pt != "epsilon":
            raise ValueError(f"{cfg.get('_class_name')} with prediction_type {pt!r}: fewstep reads EDM schedulers "
                             "with prediction_type 'epsilon' (EDM's F-prediction) only")
        process_edm = VE(t_min=float(cfg.get("sigma_min", 0.002)), t_max=float(cfg.get("sigma_max", 80.0)))
        return TrainSchedule(process_edm, pt, n, False, False, cfg, float(cfg.get("sigma_data", 0.5)))
    learned = str(cfg.get("variance_type", "")) in ("learned", "learned_range")
    if is_flow_config(cfg) or pt in ("flow_prediction", "flow"):
        shift = float(cfg.get("flow_shift", cfg.get("shift", 1.0)) or 1.0)
        t_lo = 1.0 / n
        t_min = shift * t_lo / (1 + (shift - 1) * t_lo)
        process: NoiseProcess = RectifiedFlow(t_min=t_min, t_max=_FLOW_T_MAX)
        pt = "flow_prediction"
    else:
        process = VPDiscrete(_alphas_cumprod(cfg))
    return TrainSchedule(process, pt, n, round_timesteps, learned, cfg)


def _alphas_cumprod(cfg: dict[str, Any]) -> Tensor:
    """abar_t exactly as diffusers computes it (DDPMScheduler: float32 betas incl. trained_betas, zero-SNR)."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr")
    sched = DDPMScheduler(**{k: cfg[k] for k in keys if k in cfg and cfg[k] is not None})
    return sched.alphas_cumprod.to(torch.float64).clamp_min(_ZERO_SNR_ACP)
