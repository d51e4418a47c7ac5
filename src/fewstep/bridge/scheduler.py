"""`FewStepScheduler`: a diffusers scheduler that executes a fewstep plan through the one engine.

The pipeline's latent is the native one, x_native = c_in(sigma) x_VE = alpha(sigma) x_VE, so `scale_model_input` is
the identity and DDPMPipeline (which never calls it) works too. Each `step` turns the UNet output F into the
engine's x0 estimate D = c_skip x + c_out F (Karras et al. 2022, Eq. 7; precond.py) and sends it to
`fewstep.solvers.engine.run`; no solver maths lives here. `timesteps` are the model timesteps of the plan's
evaluation requests, found by a dry run of the engine, so the pipeline calls the network exactly `plan.nfe` times.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

from ..denoiser import append_dims, batch_sigma
from .schedule import config_dict, schedule_from_config

logger = logging.getLogger(__name__)
_DDPM_DEFAULT = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
                 "beta_schedule": "linear", "prediction_type": "epsilon"}


@dataclass
class FewStepSchedulerOutput(BaseOutput):
    """prev_sample: the next native latent (the final x0 after the last step); pred_original_sample: this D."""

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


def _load_plan(plan: Any) -> Any:
    from ..solvers.plan import Plan

    if isinstance(plan, Plan):
        return plan
    return Plan.from_json(plan) if isinstance(plan, str) else Plan.from_dict(dict(plan))  # metadata blocks are kept


def request_sigmas(plan: Any) -> Tensor:
    """The sigmas of the plan's evaluation requests, in order: a dry run of the engine with D = 0 (float64 [nfe])."""
    from ..solvers.engine import run

    shape = tuple(plan.afs_mean.shape) if plan.afs_mean is not None else (1, 1)  # broadcastable with the AFS mean
    x_T = torch.ones(shape, dtype=torch.float64) * float(plan.sigmas[0])
    gen, out = run(plan, x_T), []
    try:
        x, s = next(gen)
        while len(out) <= 4 * plan.nfe + 8:
            out.append(float(s))
            x, s = gen.send(torch.zeros_like(x))
    except StopIteration:
        pass
    if len(out) != plan.nfe:
        raise ValueError(f"the engine asked for {len(out)} evaluations but the plan declares nfe={plan.nfe}; "
                         "the plan is inconsistent, rebuild it with fewstep.plans")
    return torch.tensor(out, dtype=torch.float64)


class FewStepScheduler(SchedulerMixin, ConfigMixin):
    """Run a fewstep plan inside a diffusers pipeline: `pipe.scheduler = FewStepScheduler.from_plan(plan, ...)`.

    The config stores the plan (JSON) and the model's training schedule, so `save_pretrained`/`from_pretrained`
    round-trip. The plan fixes the number of steps: `num_inference_steps` passed by a pipeline is ignored.
    """

    config_name = "scheduler_config.json"
    order = 1
    _compatibles: list[str] = []

    @register_to_config
    def __init__(
        self,
        plan: dict[str, Any] | str | None = None,
        train_scheduler: dict[str, Any] | None = None,
        prediction_type: str | None = None,
        round_timesteps: bool = False,
        num_train_timesteps: int | None = None,
    ) -> None:
        if plan is None:
            raise ValueError("FewStepScheduler needs a plan: use FewStepScheduler.from_plan(plan, scheduler_or_den)")
        self.plan = _load_plan(plan)
        self.schedule = schedule_from_config(train_scheduler or _DDPM_DEFAULT, prediction_type, round_timesteps)
        self.precond = self.schedule.precond()
        self.sigmas = request_sigmas(self.plan)
        # AFS (Zhou et al. 2024): no D at sigma_max. afs="zero" makes x_1 = (sigma_1/sigma_0) x_T, a pure rescaling,
        # so the pipeline's first latent is taken as x_1 itself (init_noise_sigma at sigma_1): exactly nfe calls.
        # afs="mean" adds the data mean, which a pipeline latent cannot carry: its first call is made at sigma_0 and
        # discarded (nfe + 1 calls; the images still equal fs.sample's).
        self._afs_call = self.plan.afs == "mean"
        s0 = self.plan.sigmas[0].to(torch.float64)
        self._x_T_scale = float(s0 / self.sigmas[0]) if self.plan.afs == "zero" else 1.0
        if self._afs_call:
            logger.warning("plan uses AFS with a data mean: a diffusers pipeline makes one extra (discarded) call")
            self.sigmas = torch.cat([self.plan.sigmas[:1], self.sigmas])
        self.timesteps = self.schedule.timestep(self.sigmas).to(torch.float32)
        s_in = self.sigmas[0]
        self.init_noise_sigma = float(s_in * self.schedule.alpha(s_in))  # first sigma in the pipeline's scaling
        self.num_inference_steps = len(self.timesteps)
        self._reset()

    @classmethod
    def from_plan(
        cls, plan: Any, scheduler: Any = None, *, prediction_type: str | None = None, round_timesteps: bool = False,
    ) -> FewStepScheduler:
        """Build from a `fewstep.Plan` and the model's training schedule.

        `scheduler` is the model's own diffusers scheduler (e.g. `pipe.scheduler`), its config dict, or a denoiser from
        `fs.from_diffusers` (its `.schedule` is used); None means diffusers' DDPM default (linear betas, epsilon).
        """
        sched = getattr(scheduler, "schedule", None)
        if sched is not None:
            cfg, prediction_type = sched.config, prediction_type or sched.prediction_type
            round_timesteps = round_timesteps or sched.round_timesteps
        elif scheduler is None:
            cfg = dict(_DDPM_DEFAULT)
        else:
            cfg = config_dict(scheduler)
        cfg = config_dict(cfg)
        return cls(plan=json.loads(_load_plan(plan).to_json()), train_scheduler=cfg, prediction_type=prediction_type,
                   round_timesteps=round_timesteps, num_train_timesteps=int(cfg.get("num_train_timesteps", 1000)))

    def _reset(self) -> None:
        self._engine: Any = None
        self._x: Tensor | None = None
        self._step_index: int | None = None

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def __len__(self) -> int:
        return self.schedule.num_train_timesteps

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      **kwargs: Any) -> None:
        """Reset for a new run; the plan fixes the steps (a different `num_inference_steps` is ignored, logged)."""
        if num_inference_steps is not None and num_inference_steps != len(self.timesteps):
            logger.info("FewStepScheduler runs its plan's %d evaluations; num_inference_steps=%d is ignored",
                        len(self.timesteps), num_inference_steps)
        if device is not None:
            self.timesteps = self.timesteps.to(device)
        self._reset()

    def scale_model_input(self, sample: Tensor, timestep: Any = None) -> Tensor:
        """Identity: the pipeline's latent already is the UNet input c_in(sigma) x_VE."""
        return sample

    def step(
        self, model_output: Tensor, timestep: Any, sample: Tensor, generator: torch.Generator | None = None,
        return_dict: bool = True, **kwargs: Any,
    ) -> FewStepSchedulerOutput | tuple[Tensor]:
        """Convert the UNet output to x0 = c_skip x + c_out F, send it to the engine, return the next native latent."""
        if self._engine is None:
            if self._step_index not in (None, 0):
                raise RuntimeError("the plan already finished; call set_timesteps() before a new run")
            from ..solvers.engine import run

            s0 = batch_sigma(self.sigmas[0], sample)
            x_T = sample.to(torch.float64) * (self._x_T_scale / append_dims(self.precond.c_in(s0), sample.ndim))
            x_T = x_T.to(sample.dtype)
            self._engine = run(self.plan, x_T, generator=generator)
            self._x, _ = next(self._engine)
            self._step_index = 0
            if self._afs_call:  # the pipeline evaluated x_T although the plan needs no D there (see __init__)
                self._step_index = 1
                c_in = append_dims(self.precond.c_in(batch_sigma(self.sigmas[1], self._x)), sample.ndim)
                prev = (c_in * self._x.to(torch.float64)).to(sample.dtype)
                return FewStepSchedulerOutput(prev_sample=prev) if return_dict else (prev,)
        i, x = self._step_index, self._x
        s = batch_sigma(self.sigmas[i], x)
        if self.schedule.learned_variance and model_output.shape[1] == 2 * x.shape[1]:
            model_output = model_output[:, : x.shape[1]]
        c_skip, c_out = (append_dims(f(s), x.ndim) for f in (self.precond.c_skip, self.precond.c_out))
        d = (c_skip * x.to(torch.float64) + c_out * model_output.to(torch.float64)).to(x.dtype)
        try:
            x_next, s_next = self._engine.send(d)
        except StopIteration as stop:
            prev, self._engine = stop.value.to(sample.dtype), None
        else:
            if abs(float(s_next) - float(self.sigmas[i + 1])) > 1e-9 * float(self.sigmas[i + 1]):
                raise RuntimeError(f"engine asked for sigma={float(s_next)} but the dry run predicted "
                                   f"{float(self.sigmas[i + 1])}; the plan's requests depend on the data")
            self._x = x_next
            c_in = append_dims(self.precond.c_in(batch_sigma(s_next, x_next)), x.ndim)
            prev = (c_in * x_next.to(torch.float64)).to(sample.dtype)
        self._step_index = i + 1
        if not return_dict:
            return (prev,)
        return FewStepSchedulerOutput(prev_sample=prev, pred_original_sample=d.to(sample.dtype))
