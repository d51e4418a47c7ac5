"""Run consistency distillation / training or DMD through the one training loop (fewstep.train.loop): progress,
atomic checkpoints, exact resume, EMA and torchrun DDP come from there; this module only builds the student
config, the teacher and the objective: ConsistencyObjective (Song et al. 2023, Alg. 2-3; Song & Dhariwal 2024) or
DMDObjective (Yin et al. 2024)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..train.loop import load_checkpoint, train
from ..zoo.lookup import resolve
from .config import ConsistencyConfig, DMDConfig
from .consistency import ConsistencyObjective, student_config
from .dmd import DMDObjective

Config = ConsistencyConfig | DMDConfig

# Architecture of digits-edm (fewstep zoo), used by --mode ict/ct when no --teacher gives one.
DEFAULT_NET = {"class": "unet", "kwargs": {"in_channels": 1, "channels": 32, "num_blocks": 2,
                                           "channel_mult": [1, 2, 2], "num_classes": 10}}


def frozen(spec: Any, device: str | torch.device = "cpu") -> Any:
    """A teacher or init model, frozen (eval mode, no gradients) on `device`: fs.zoo.resolve of a zoo name, a
    checkpoint, a diffusers folder, or a denoiser object (e.g. fs.analytic)."""
    den = resolve(spec, device)
    if isinstance(den, nn.Module):
        den = den.requires_grad_(False).eval().to(device)
    return den


def scratch_config(shape: tuple[int, ...], net: dict[str, Any] | None = None, sigma_min: float = 0.002,
                   sigma_max: float = 80.0, sigma_data: float = 0.5) -> dict[str, Any]:
    """An io config for a consistency model trained from scratch (CT / iCT)."""
    net = json.loads(json.dumps(net or DEFAULT_NET))
    if net["class"] == "unet":
        net["kwargs"]["in_channels"] = int(shape[0])
    return {"kind": "denoiser", "net": net,
            "precond": {"name": "consistency", "kwargs": {"sigma_min": sigma_min, "sigma_data": sigma_data}},
            "sigma_min": sigma_min, "sigma_max": sigma_max, "shape": list(shape)}


def _check_resume(ckpt: Path, model_config: dict[str, Any], cfg: Config) -> None:
    saved = load_checkpoint(ckpt)["config"]["model"].get("distill")
    now = model_config["distill"]
    if saved is not None:  # an option added since the checkpoint was written had its default then
        defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
        saved = {**{k: defaults[k] for k in now.keys() - saved.keys() if k in defaults}, **saved}
        # options this config no longer has never acted on its mode (e.g. fake_lr in cd, mu/skip/horizon in dmd,
        # from when one config held all four modes): a checkpoint that recorded them resumes
        saved = {k: v for k, v in saved.items() if k in now or k in {"teacher", "init"}}
    if saved != now:
        raise CheckpointError(f"{ckpt} was distilled with {saved}, this run asks for {model_config['distill']}; "
                              "resume with the same settings or use another checkpoint path")


def _weights_digest(den: Any) -> str | None:
    """SHA-256 of a network's weights (None for a denoiser without any, e.g. an analytic one): what a cache of its
    outputs is keyed by, so another file at the same path is not mistaken for it."""
    import hashlib

    if not isinstance(den, nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in sorted(den.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def ode_bank(den: Any, cc: Config, shape: tuple[int, ...], seed: int = 0,
             device: str | torch.device = "cpu", cache: str | Path | None = None) -> torch.Tensor:
    """cc.reg_paths PF-ODE trajectories of the teacher denoiser `den` on the CD grid from sigma_max z, z ~ N(0, I)
    seeded by `seed` (teacher_trajectories): [M, N, *shape]. `cache` keeps them beside the checkpoint, so a resumed
    run (or the next segment of one) loads them instead of spending M x 2(N-1) teacher calls again. The cache is
    keyed by the teacher's weights and the settings; one that differs, or a damaged one, is recomputed."""
    from ..io import atomic_torch_save
    from . import schedules as S
    from .teacher import teacher_trajectories

    key = {"teacher": _weights_digest(den), "paths": cc.reg_paths, "N": cc.N, "solver": cc.solver,
           "sigma_min": cc.sigma_min, "sigma_max": cc.sigma_max, "rho": cc.rho, "seed": seed, "shape": list(shape)}
    cache = Path(cache) if cache is not None and key["teacher"] is not None else None
    if cache is not None and cache.is_file():
        try:
            saved = torch.load(cache, map_location=device, weights_only=True)
        except Exception:  # a damaged cache is only lost time: rebuild it
            saved = {}
        if isinstance(saved, dict) and saved.get("key") == key:
            return saved["states"]
    z = torch.randn((cc.reg_paths, *shape), generator=torch.Generator().manual_seed(seed)).to(device)
    grid = S.cm_grid(cc.N, cc.sigma_min, cc.sigma_max, cc.rho).flip(0)
    states = teacher_trajectories(den, cc.sigma_max * z, grid, cc.solver)
    if cache is not None:
        atomic_torch_save({"key": key, "states": states.cpu()}, cache)
    return states


def check_teacher(cc: Config, teacher: Any) -> None:
    """Refuse a mode that distils from a teacher when none is given (before any work, naming the option)."""
    if cc.uses_teacher and teacher is None:
        raise ValueError(f"--mode {cc.mode} needs --teacher (a zoo name or checkpoint); use --mode ict to train from "
                         "scratch")


def distill(cc: Config, tc: Any, data: Any, teacher: Any = None,
            out: str | Path | None = None, ckpt: str | Path | None = None, resume: bool = False,
            device: str | torch.device = "cpu", command: str | None = None, dropout: float | None = None,
            net: dict[str, Any] | None = None, init: str | None = None) -> Any:
    """Train a consistency model: CD (a ConsistencyConfig) or DMD (a DMDConfig) from `teacher` (student initialised
    from its weights), or CT / iCT from scratch (`teacher` then only lends its architecture). `init` (a zoo name or
    saved model) starts the student from that model's weights instead, e.g. a second stage with a larger batch. `tc`
    is a TrainConfig. Returns the loop's TrainResult; the EMA student is saved to `out` (fewstep.io.save_model)."""
    check_teacher(cc, teacher)
    teach = frozen(teacher, device) if teacher is not None else None
    init_state = None
    if teach is not None and hasattr(teach, "config"):
        model_config = student_config(teach.config, cc.sigma_min, dropout)
        if net is not None:
            model_config["net"] = net
        if cc.uses_teacher:
            init_state = {k: v.detach().clone() for k, v in teach.state_dict().items()}
    else:
        model_config = scratch_config(tuple(data.shape), net, cc.sigma_min, cc.sigma_max, cc.sigma_data)
        if cc.uses_teacher and net is None:
            raise ValueError("a teacher without a fewstep config (e.g. an analytic one) needs net= for the student")
        if dropout is not None:
            model_config["net"]["kwargs"]["dropout"] = float(dropout)
    if cc.sigma_max != model_config["sigma_max"]:
        model_config["sigma_max"] = cc.sigma_max
    model_config["distill"] = {"mode": cc.mode, **dataclasses.asdict(cc),
                               "teacher": teacher if isinstance(teacher, str) else None}
    if init is not None:  # the loop says so if these weights do not fit the student's network
        init_state = {k: v.detach().clone() for k, v in frozen(init).state_dict().items()}
        model_config["distill"]["init"] = init
    ckpt_path = Path(ckpt) if ckpt is not None else (Path(out).with_suffix(".ckpt.pt") if out is not None else None)
    if resume and ckpt_path is not None:
        _check_resume(ckpt_path, model_config, cc)
    bank = None
    if cc.reg > 0:  # every rank builds the same bank (seeded by the run's seed)
        cache = ckpt_path.with_suffix(".paths.pt") if ckpt_path is not None else None
        bank = ode_bank(teach, cc, tuple(data.shape), tc.seed, device, cache)
    if isinstance(cc, DMDConfig):
        objective: Any = DMDObjective(cc, teach, bank)
    else:
        objective = ConsistencyObjective(cc, tc.steps, teach, bank)
    return train(model_config, data, tc, out=out, ckpt=ckpt_path, resume=resume, device=device, command=command,
                 objective=objective, init_state=init_state)
