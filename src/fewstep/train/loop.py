"""One training loop for denoisers: AdamW, LR warm-up, EMA, gradient clipping, atomic checkpoints, exact resume,
torchrun DDP.

Recipe after EDM (Karras et al. 2022, training/training_loop.py): linear LR warm-up, an EMA of the weights with a
ramp-up, the EMA weights are the artefact. Batches and noise come from generators seeded by (seed, step, rank), so
a resumed run draws exactly what an uninterrupted one would, and no data-loader state needs saving.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ..errors import CheckpointError, DataError
from ..io import atomic_torch_save, build_denoiser, git_commit, save_model
from .config import TrainConfig
from .guard import hold
from .objective import DenoisingObjective, Objective, load_objective_state, objective_state
from .progress import ProgressBar

# Fields that may change between a run and its resumption without changing what is trained.
_RESUMABLE = {"steps", "ckpt_every", "progress", "log_every", "cooldown"}


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """LR multiplier at `step`: linear warm-up, constant, then a linear decay to 0 over the last cfg.cooldown steps
    (warmup-stable-decay, Hagele et al. 2024: the cool-down can branch from any checkpoint of the stable phase)."""
    f = min(1.0, (step + 1) / max(cfg.warmup, 1))
    return min(f, (cfg.steps - step) / cfg.cooldown) if cfg.cooldown else f


@dataclass
class TrainResult:
    den: nn.Module  # the EMA denoiser (eval mode): the artefact
    raw: nn.Module  # the raw trained denoiser
    step: int
    losses: list[float]
    wall_s: float


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def ema_avg_fn(decay: float):
    """EMA update for AveragedModel with EDM-style ramp-up: beta_n = min(decay, (1 + n) / (10 + n))."""
    def avg(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        beta = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        return averaged * beta + current * (1 - beta)
    return avg


def batch_indices(n: int, batch: int, step: int, seed: int, rank: int = 0, world: int = 1) -> Tensor:
    """This rank's share of the global batch of `step`: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = n // batch
    epoch, j = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[j * batch:(j + 1) * batch][rank::world]


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator of the noise/sigma/label-dropout draws of one (step, rank)."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) * 1_009 + rank + 1)


def drop_labels(y: Tensor, p: float, num_classes: int, generator: torch.Generator) -> Tensor:
    """Replace labels by the null label num_classes with probability p (Ho & Salimans 2022, Alg. 1)."""
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, num_classes), y)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint, with clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}; run without --resume to start a fresh run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable training checkpoint ({e}); delete it to start afresh") from e
    if not isinstance(state, dict) or not {"model", "ema", "optimizer", "step", "config"} <= set(state):
        raise CheckpointError(f"{path} lacks model/ema/optimizer/step/config; it is not a fewstep checkpoint")
    return state


def _check_same_run(saved: dict[str, Any], model_config: dict[str, Any], cfg: TrainConfig, path: Path,
                    step: int) -> None:
    for key in ("net", "precond", "sigma_min", "sigma_max", "shape"):
        if saved["model"].get(key) != model_config.get(key):
            raise CheckpointError(f"{path} was trained with {key}={saved['model'].get(key)!r}, this run asks for "
                                  f"{model_config.get(key)!r}; use the same settings or another checkpoint path")
    now = dataclasses.asdict(cfg)
    for key, value in saved["train"].items():
        if key not in _RESUMABLE and now.get(key) != value:
            raise CheckpointError(f"{path} was trained with {key}={value!r}, this run asks for {now.get(key)!r}; "
                                  "resume with the same settings (only steps/ckpt_every may change)")
    old = TrainConfig(**{k: v for k, v in saved["train"].items() if k in now})
    if any(lr_factor(old, s) != lr_factor(cfg, s) for s in range(step)):
        raise CheckpointError(f"{path} was saved at step {step}, inside the LR cool-down of its run (steps="
                              f"{old.steps}, cooldown={old.cooldown}); steps={cfg.steps}, cooldown={cfg.cooldown} "
                              "would change the learning rate it already trained with. Resume with the saved "
                              "--steps/--cooldown, or branch a cool-down from a checkpoint written before it began")


def train(model_config: dict[str, Any], data: Any, cfg: TrainConfig, out: str | Path | None = None,
          ckpt: str | Path | None = None, resume: bool = False, device: str | torch.device = "cpu",
          command: str | None = None, objective: Objective | None = None,
          init_state: dict[str, Tensor] | None = None) -> TrainResult:
    """Train the denoiser described by `model_config` (io config: net, precond, sigma range, shape) on `data`
    (fields x [N, ...], y [N] or None, num_classes). Writes `ckpt` every cfg.ckpt_every steps and the EMA
    artefact to `out` (fewstep.io.save_model) on rank 0. Works alone or under torch.distributed (DDP).
    `objective` (a fewstep.train.Objective, e.g. consistency distillation) replaces cfg.loss's DenoisingObjective;
    the loop drives only that protocol, DDP-wraps its auxiliary networks and checkpoints them with its state.
    `init_state` initialises the weights (e.g. from a teacher). Rank 0 holds the lock of `out` (train.guard.hold)
    for the whole run, so a second run on the same output fails at once."""
    with hold(out if dist_info()[0] == 0 else None):
        return _train(model_config, data, cfg, out, ckpt, resume, device, command, objective, init_state)


def _train(model_config: dict[str, Any], data: Any, cfg: TrainConfig, out: str | Path | None,
           ckpt: str | Path | None, resume: bool, device: str | torch.device, command: str | None,
           objective: Objective | None, init_state: dict[str, Tensor] | None) -> TrainResult:
    objective = DenoisingObjective(cfg.loss, cfg.loss_kwargs) if objective is None else objective
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a fewstep.train.Objective (loss/after_step/state_dict/aux), got "
                        f"{type(objective).__name__}; subclass it")
    rank, world = dist_info()
    device = torch.device(device)
    if cfg.batch % world:
        raise ValueError(f"batch {cfg.batch} must be divisible by the number of processes {world}")
    x_all = data.x.to(device=device, dtype=torch.float32)
    num_classes = int(getattr(data, "num_classes", 0) or 0)
    cond_net = int(model_config["net"]["kwargs"].get("num_classes", 0))
    y_all = data.y.to(device) if (cond_net and data.y is not None) else None
    if cond_net and (y_all is None or cond_net != num_classes):
        raise DataError(f"the network expects {cond_net} classes but the data has {num_classes} with labels "
                        f"{'absent' if data.y is None else 'present'}; build the net with num_classes=0 (--no-cond)")
    if x_all.shape[0] < cfg.batch:
        raise DataError(f"the data set has {x_all.shape[0]} examples, fewer than one batch ({cfg.batch}); "
                        "lower --batch")
    torch.manual_seed(cfg.seed)
    den = build_denoiser(model_config).train().to(device)
    if init_state is not None:
        try:
            den.load_state_dict(init_state)
        except RuntimeError as e:
            why = str(e).splitlines()[-1].strip()
            raise CheckpointError(f"the initial weights do not fit the network {model_config['net']} ({why}); "
                                  "initialise from a model of the same architecture") from e
    ema = AveragedModel(den, avg_fn=ema_avg_fn(cfg.ema_decay), use_buffers=False)
    # the uniform mean of EMA snapshots (Izmailov et al. 2018's averaging, applied to the EMA): flattens the noise
    # that a constant LR leaves in the weights; the artefact once it holds a snapshot
    avg = AveragedModel(ema.module, use_buffers=False) if cfg.average_from is not None else None
    opt = torch.optim.AdamW([p for p in den.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    objective.setup(den)
    # window: the losses of the logging window in progress; flushed: the run ended inside it and history[-1] is its
    # mean so far (a resume that goes on takes that entry back and continues the window, as an unbroken run would)
    step, wall0, history, window, flushed = 0, 0.0, [], [], False
    ckpt = Path(ckpt) if ckpt is not None else (Path(out).with_suffix(".ckpt.pt") if out is not None else None)
    if resume:
        if ckpt is None:
            raise ValueError("resume=True needs a checkpoint path (ckpt= or out=)")
        state = load_checkpoint(ckpt)
        if int(state["step"]) > cfg.steps:
            raise ValueError(f"{ckpt} is at step {state['step']}, past --steps {cfg.steps}: its weights are the "
                             f"{state['step']}-step ones; resume with --steps {state['step']} or more")
        _check_same_run(state["config"], model_config, cfg, ckpt, int(state["step"]))
        den.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if avg is not None and state.get("average") is not None:
            avg.load_state_dict(state["average"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, wall0, history = int(state["step"]), float(state.get("wall_s", 0.0)), list(state.get("losses", []))
        window = list(state.get("window", []))
        if state.get("flushed") and step < cfg.steps:
            history.pop()
        torch.set_rng_state(state["rng"]["torch"])
        load_objective_state(objective, state.get("objective") or {}, ckpt)
    model = nn.parallel.DistributedDataParallel(den) if world > 1 else den
    if world > 1:  # the auxiliary networks' gradients are averaged across ranks too, so their copies stay equal
        for a in objective.aux:
            a.wrap(nn.parallel.DistributedDataParallel)

    def save_ckpt() -> None:
        if rank == 0 and ckpt is not None:
            atomic_torch_save({
                "model": den.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "average": avg.state_dict() if avg is not None else None,
                "scheduler": sched.state_dict(), "step": step, "wall_s": wall0 + time.perf_counter() - t0,
                "losses": history, "window": window, "flushed": flushed, "rng": {"torch": torch.get_rng_state()},
                "config": {"model": model_config, "train": dataclasses.asdict(cfg), "command": command},
                "objective": objective_state(objective),
            }, ckpt)

    t0 = time.perf_counter()
    bar = ProgressBar(cfg.steps, step, enabled=cfg.progress and rank == 0)
    with bar:
        while step < cfg.steps:
            idx = batch_indices(x_all.shape[0], cfg.batch, step, cfg.seed, rank, world).to(device)
            gen = step_generator(cfg.seed, step, rank, device)
            y = drop_labels(y_all[idx], cfg.label_dropout, num_classes, gen) if y_all is not None else None
            loss = objective.loss(model, x_all[idx], y, gen, step).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr or --grad-clip")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(den.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            ema.update_parameters(den)
            objective.after_step(den, step)
            step += 1
            if avg is not None and step >= cfg.average_from and step % cfg.average_every == 0:
                avg.update_parameters(ema.module)
            window.append(loss.item())
            if step % cfg.log_every == 0:
                history.append(sum(window) / len(window))
                window = []
            elif step == cfg.steps:
                history.append(sum(window) / len(window))
                flushed = True
            bar.update(step, history[-1] if history else math.nan)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save_ckpt()
    wall = wall0 + time.perf_counter() - t0
    averaged = int(avg.n_averaged) if avg is not None else 0
    final = (avg if averaged else ema).module.eval()
    if rank == 0 and out is not None:
        save_model(out, final, {**model_config, "train": {
            **dataclasses.asdict(cfg), "averaged_snapshots": averaged, "command": command, "commit": git_commit(),
            "wall_s": round(wall, 1), "world_size": world, "device": str(device)}})
    return TrainResult(final, den.eval(), step, history, wall)


def ema_from_checkpoint(path: str | Path) -> nn.Module:
    """The EMA denoiser stored in a training checkpoint (e.g. to inspect a run that is still going)."""
    state = load_checkpoint(path)
    den = build_denoiser(state["config"]["model"])
    ema = AveragedModel(den, use_buffers=False)
    ema.load_state_dict(state["ema"])
    return ema.module.eval()
