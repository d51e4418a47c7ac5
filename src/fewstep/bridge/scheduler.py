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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

from ..denoiser import append_dims, batch_sigma
from . import replan
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
    from ..solvers.stochastic import zeros

    shape = tuple(plan.afs_mean.shape) if plan.afs_mean is not None else (1, 1)  # broadcastable with the AFS mean
    x_T = torch.ones(shape, dtype=torch.float64) * float(plan.sigmas[0])
    gen, out = run(plan, x_T, generator=zeros), []  # (churn's sigma_hat does not depend on the noise)
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

    The config stores the plan (JSON), its constructor record when it has one (replan.py) and the model's training
    schedule, so `save_pretrained`/`from_pretrained` round-trip. `set_timesteps(n)` rebuilds a named plan at n
    evaluations; a searched or hand-made plan runs only at its own NFE (another n is an error). `from_config` of any
    diffusers scheduler's config runs DPM-Solver++(2M) over that schedule's range (Lu et al. 2022b).
    """

    config_name = "scheduler_config.json"
    order = 1
    _compatibles = [e.name for e in KarrasDiffusionSchedulers] + ["FlowMatchEulerDiscreteScheduler"]

    @register_to_config
    def __init__(
        self,
        plan: dict[str, Any] | str | None = None,
        train_scheduler: dict[str, Any] | None = None,
        prediction_type: str | None = None,
        round_timesteps: bool = False,
        num_train_timesteps: int | None = None,
        constructor: dict[str, Any] | None = None,
    ) -> None:
        if plan is None:
            raise ValueError("FewStepScheduler needs a plan: use FewStepScheduler.from_plan(plan, scheduler_or_den) "
                             "or FewStepScheduler.from_config(pipe.scheduler.config)")
        self.schedule = schedule_from_config(train_scheduler or _DDPM_DEFAULT, prediction_type, round_timesteps)
        self.precond = self.schedule.precond()
        self.plan0, self.constructor = _load_plan(plan), constructor  # the configured plan; its constructor record
        self._begin_index: int | None = None
        self._use(self.plan0)

    def _use(self, plan: Any) -> None:
        """Make `plan` the one the next run executes: its request sigmas, model timesteps and first-latent scale."""
        if plan.steps[0].churn and plan.afs == "none":
            raise ValueError("the plan's first step churns (EDM: noise added at x_T before the first model call), "
                             "which a pipeline's first latent cannot carry; build it with S_tmax below sigma_max "
                             "(EDM uses 50) or sample with fs.sample")
        self.plan = plan
        self.sigmas = request_sigmas(plan)
        # AFS (Zhou et al. 2024): no D at sigma_max. afs="zero" makes x_1 = (sigma_1/sigma_0) x_T, a pure rescaling,
        # so the pipeline's first latent is taken as x_1 itself (init_noise_sigma at sigma_1): exactly nfe calls.
        # afs="mean" adds the data mean, which a pipeline latent cannot carry: its first call is made at sigma_0 and
        # discarded (nfe + 1 calls; the images still equal fs.sample's).
        self._afs_call = plan.afs == "mean"
        s0 = plan.sigmas[0].to(torch.float64)
        self._x_T_scale = float(s0 / self.sigmas[0]) if plan.afs == "zero" else 1.0
        if self._afs_call:
            logger.warning("plan uses AFS with a data mean: a diffusers pipeline makes one extra (discarded) call")
            self.sigmas = torch.cat([plan.sigmas[:1], self.sigmas])
        self.timesteps = self.schedule.timestep(self.sigmas).to(torch.float32)
        s_in = self.sigmas[0]
        self.init_noise_sigma = float(s_in * self.schedule.alpha(s_in))  # first sigma in the pipeline's scaling
        self.num_inference_steps = len(self.timesteps)
        self._reset()

    @classmethod
    def from_plan(
        cls, plan: Any, scheduler: Any = None, *, prediction_type: str | None = None, round_timesteps: bool = False,
        constructor: dict[str, Any] | bool | None = None,
    ) -> FewStepScheduler:
        """Build from a `fewstep.Plan` and the model's training schedule.

        `scheduler` is the model's own diffusers scheduler (e.g. `pipe.scheduler`), its config dict, or a denoiser from
        `fs.from_diffusers` (its `.schedule` is used); None means diffusers' DDPM default (linear betas, epsilon).
        `constructor`: None finds the named constructor and grid that rebuild the plan (`replan.infer`), a record
        from `replan.constructor(...)` is used as given, False pins the plan to its NFE.
        """
        sched = getattr(scheduler, "schedule", None)
        if sched is not None:
            cfg, prediction_type = sched.config, prediction_type or sched.prediction_type
            round_timesteps = round_timesteps or sched.round_timesteps
        elif scheduler is None:
            cfg = dict(_DDPM_DEFAULT)
        else:
            cfg = config_dict(scheduler)
        cfg, plan = config_dict(cfg), _load_plan(plan)
        record = replan.infer(plan) if constructor is None else constructor or None
        return cls(plan=json.loads(plan.to_json()), train_scheduler=cfg, prediction_type=prediction_type,
                   round_timesteps=round_timesteps, num_train_timesteps=int(cfg.get("num_train_timesteps", 1000)),
                   constructor=record)

    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """diffusers' scheduler swap: `FewStepScheduler.from_config(pipe.scheduler.config)`.

        A FewStepScheduler config loads as saved. Any other diffusers scheduler's config is read as the training
        schedule and gets `solver` (default dpm_solver_pp_2m; `solver_options` passed on) on `grid` (default logsnr)
        over its whole sigma range, rebuilt at each `set_timesteps(num_inference_steps)`.
        """
        cfg = dict(config) if isinstance(config, Mapping) else None
        if cfg is None or cfg.get("plan") is not None or kwargs.get("plan") is not None:
            return super().from_config(config, return_unused_kwargs, **kwargs)
        solver, grid = kwargs.pop("solver", replan.DEFAULT_SOLVER), kwargs.pop("grid", replan.DEFAULT_GRID)
        options, nfe = kwargs.pop("solver_options", {}), kwargs.pop("num_inference_steps", replan.DEFAULT_NFE)
        pt, rt = kwargs.pop("prediction_type", None), kwargs.pop("round_timesteps", False)
        train = _foreign_config(cfg)
        record = replan.foreign_record(schedule_from_config(train, pt, rt), solver, grid, **options)
        out = cls.from_plan(replan.build(record, nfe), train, prediction_type=pt, round_timesteps=rt,
                            constructor=record)
        return (out, kwargs) if return_unused_kwargs else out

    def _reset(self) -> None:
        self._engine: Any = None
        self._x: Tensor | None = None
        self._prev: Tensor | None = None
        self._step_index: int | None = None

    @property
    def step_index(self) -> int | None:
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first timestep index of a run (set by img2img/inpainting pipelines via `set_begin_index`)."""
        return self._begin_index

    def __len__(self) -> int:
        return self.schedule.num_train_timesteps

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      **kwargs: Any) -> None:
        """Reset for a new run of `num_inference_steps` evaluations (None: the configured plan's).

        A plan with a constructor record is rebuilt at that NFE; a fixed plan raises unless it is its own NFE.
        """
        n, own = num_inference_steps, self.plan0
        if n is None or n in (own.nfe, own.nfe + (own.afs == "mean")):
            plan = own
        elif self.constructor is None:
            raise ValueError(
                f"this FewStepScheduler runs a fixed plan ({own.name or 'unnamed'}, {own.nfe} evaluations; searched "
                f"and hand-made plans record no constructor), so it cannot run num_inference_steps={n}: pass "
                f"num_inference_steps={own.nfe}, or build it from a named plan (fs.plans.get) or with "
                "FewStepScheduler.from_config(pipe.scheduler.config)")
        else:
            plan = replan.build(self.constructor, int(n))
        if plan is not self.plan:
            self._use(plan)
        if device is not None:
            self.timesteps = self.timesteps.to(device)
        self._begin_index = None
        self._reset()

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next run at timestep index `begin_index` (diffusers' img2img convention): the plan's tail from
        that grid point, warm-started (`replan.tail`), fed the pipeline's `add_noise` latent."""
        if not 0 <= begin_index < len(self.timesteps):
            raise ValueError(f"begin_index must be in [0, {len(self.timesteps)}), got {begin_index}")
        if begin_index > 0:
            self._grid_step(begin_index)  # a clear error now if it falls inside a singlestep step
        self._begin_index = begin_index

    def _grid_step(self, k: int) -> int:
        return replan.grid_index(self.plan, k - int(self._afs_call))

    def _sigma_of(self, t: Any) -> Tensor:
        """The sigma of one of this run's timesteps, else of any model timestep (training-style use)."""
        hit = (self.timesteps.cpu() == torch.as_tensor(t, dtype=torch.float32).cpu()).nonzero()
        if len(hit):
            return self.sigmas[int(hit[0])]
        return replan.sigma_of_timestep(self.schedule, torch.as_tensor(t))

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """x_native = alpha(sigma) (x0 + sigma n): the forward process q(x_t | x0) (Ho et al. 2020, Eq. 4) in the
        pipeline's latent; sigma follows diffusers' Euler convention (begin index, else step index, else timesteps)."""
        t = torch.as_tensor(timesteps).reshape(-1)
        if self._begin_index is None:
            sig = torch.stack([self._sigma_of(v).reshape(()) for v in t])
        else:
            k = self._begin_index if self._step_index is None else self._step_index
            sig = self.sigmas[k].reshape(1).expand(len(t))
        wd = torch.float32 if original_samples.device.type == "mps" else torch.float64
        sig = append_dims(sig.to(original_samples.device, wd), original_samples.ndim)
        alpha = append_dims(self.schedule.alpha(sig.reshape(-1).cpu()).to(sig), original_samples.ndim)
        out = alpha * (original_samples.to(wd) + sig * noise.to(wd))
        return out.to(original_samples.dtype)

    def scale_model_input(self, sample: Tensor, timestep: Any = None) -> Tensor:
        """Identity: the pipeline's latent already is the UNet input c_in(sigma) x_VE; for an EDM training
        schedule the latent is x_VE itself and this applies c_in(sigma) (as diffusers' EDM schedulers do)."""
        if not self._edm:
            return sample
        s = self._sigma_of(self.timesteps[self._step_index or 0] if timestep is None else timestep)
        return (append_dims(self.precond.c_in(batch_sigma(s, sample)), sample.ndim) * sample.to(torch.float64)
                ).to(sample.dtype)

    @property
    def _edm(self) -> bool:
        return self.schedule.sigma_data is not None

    def _native(self, sigma: Tensor, x: Tensor) -> Tensor:
        """x_native / x_VE of the pipeline's latent at sigma: c_in(sigma) (VP / flow convention), 1 for EDM."""
        if self._edm:
            return torch.ones((), dtype=torch.float64)
        return append_dims(self.precond.c_in(batch_sigma(sigma, x)), x.ndim)

    def _changed(self, sample: Tensor) -> bool:
        """True when the pipeline hands back another latent than the last `prev_sample` (inpainting blends)."""
        p = self._prev
        if p is None or sample is p:
            return False
        return sample.shape != p.shape or not torch.equal(sample, p.to(sample.device, sample.dtype))

    def _start(self, sample: Tensor, k: int, generator: torch.Generator | None) -> Tensor | None:
        """Start the engine at timestep index k from the native latent `sample` (k > 0: the plan's tail)."""
        from ..solvers.engine import run
        from ..solvers.stochastic import Batch

        plan, scale = (self.plan, self._x_T_scale) if k == 0 else (replan.tail(self.plan, self._grid_step(k)), 1.0)
        x_T = sample.to(torch.float64) * (scale / self._native(self.sigmas[k], sample))
        if generator is None and plan.stochastic:  # diffusers' convention: no generator = torch's global RNG
            generator = Batch(None)
        self._engine = run(plan, x_T.to(sample.dtype), generator=generator)
        self._x, _ = next(self._engine)
        self._step_index = k
        if k == 0 and self._afs_call:  # the pipeline evaluated x_T although the plan needs no D there (see _use)
            self._step_index = 1
            return (self._native(self.sigmas[1], self._x) * self._x.to(torch.float64)).to(sample.dtype)
        return None

    def step(
        self, model_output: Tensor, timestep: Any, sample: Tensor, generator: torch.Generator | None = None,
        return_dict: bool = True, **kwargs: Any,
    ) -> FewStepSchedulerOutput | tuple[Tensor]:
        """Convert the UNet output to x0 = c_skip x + c_out F, send it to the engine, return the next native latent.

        A latent changed by the pipeline since the last step (inpainting) restarts the engine there (`replan.tail`).
        """
        if self._step_index is not None and self._step_index >= len(self.timesteps):
            raise RuntimeError("the plan already finished; call set_timesteps() before a new run")
        if self._engine is None or self._changed(sample):
            k = (self._begin_index or 0) if self._step_index is None else self._step_index
            first = self._start(sample, k, generator)
            if first is not None:
                self._prev = first
                return FewStepSchedulerOutput(prev_sample=first) if return_dict else (first,)
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
            prev = (self._native(s_next, x_next) * x_next.to(torch.float64)).to(sample.dtype)
        self._step_index, self._prev = i + 1, prev
        if not return_dict:
            return (prev,)
        return FewStepSchedulerOutput(prev_sample=prev, pred_original_sample=d.to(sample.dtype))


def _foreign_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Another scheduler's config as a training schedule; `pipe.scheduler.config` lacks the class name, so a flow
    scheduler is recognised by its keys (shift, no betas). EDM-style sigma schedulers are refused."""
    out = config_dict(cfg)
    if "sigma_data" in out or ("sigma_max" in out and "beta_start" not in out):
        raise ValueError("FewStepScheduler.from_config reads DDPM-style (betas) and flow-matching scheduler configs; "
                         "an EDM-style config (sigma_min/sigma_max/sigma_data) is not supported: wrap the model with "
                         "fs.from_diffusers(..., scheduler=...) and sample with fs.sample")
    if "_class_name" not in out and "beta_start" not in out and ("shift" in out or "use_dynamic_shifting" in out):
        out["_class_name"] = "FlowMatchEulerDiscreteScheduler"
    return out
