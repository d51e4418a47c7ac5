"""Latent consistency distillation (Luo et al. 2023, "Latent Consistency Models", Alg. 1): a consistency student on
a latent teacher's latents that takes the guidance scale w as a condition and predicts the solution of the
CFG-augmented PF-ODE (Eq. 9), trained on pairs a skipping interval k apart (Sec. 4.3) with an EMA target.

The teacher's step is one engine step (DDIM by default) of `guidance.InputCFG(teacher)` over the skip; the student
keeps fewstep's exact boundary condition (precond.consistency at sigma_min); the w-embedding is
nets.GuidanceEmbedded (zero-initialised, so the student starts as the teacher). Everything else (progress,
checkpoints, exact resume, EMA artefact, torchrun DDP) is the one training loop's.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.sets import ImageData
from ..guidance import InputCFG
from ..io import build_denoiser
from ..latent.stack import encode_dataset
from ..train.loop import train
from . import schedules as S
from .config import LCMConfig
from .consistency import ConsistencyObjective, consistency_loss

KIND = "latent_consistency"


def unet_of(teacher: Any) -> nn.Module:
    """The diffusers UNet inside a latent teacher (fs.zoo.load("mnist-ldm") or a LatentDenoiser of fewstep's)."""
    den = getattr(teacher, "den", teacher)
    unet = getattr(getattr(den, "net", None), "unet", None)
    if unet is None:
        raise TypeError("LCM distils a latent teacher whose network is a diffusers UNet (e.g. fs.zoo.load("
                        "'mnist-ldm')); this one has none")
    return unet


def null_label(teacher: Any) -> int | None:
    """The label of the teacher's unconditional branch (its network's null label)."""
    return getattr(getattr(getattr(teacher, "den", teacher), "net", None), "null_label", None)


def student_config(teacher: Any, cfg: LCMConfig, autoencoder: str) -> dict[str, Any]:
    """The io config of the student: the teacher's UNet2DModel inside a w-embedding (nets.GuidanceEmbedded), the
    consistency boundary preconditioning (CM Sec. 3.1) at the teacher's sigma_data, the kind latent_consistency."""
    unet = unet_of(teacher)
    ucfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_") and k != "num_class_embeds"}
    ucfg = {k: list(v) if isinstance(v, tuple) else v for k, v in ucfg.items()}
    classes = int(teacher.config.get("num_classes") or 0)
    pc = getattr(getattr(teacher, "den", teacher), "precond", None)
    sd = float((getattr(pc, "kwargs", None) or {}).get("sigma_data", 1.0))
    inner = {"class": "diffusers_unet2d", "kwargs": {"config": ucfg, "num_classes": classes}}
    if cfg.lora_rank:  # LCM-LoRA: adapters on a frozen copy of the teacher's UNet, distilled at one guidance scale
        net = {"class": "lora_unet", "kwargs": {"inner": inner, "rank": cfg.lora_rank, "targets": cfg.lora_targets,
                                                "guidance": cfg.w_min, "num_classes": classes}}
    else:
        net = {"class": "guidance_embedded", "kwargs": {"inner": inner, "dim": cfg.w_dim, "num_classes": classes}}
    return {"kind": KIND, "net": net, "precond": {"name": "consistency",
                                                  "kwargs": {"sigma_min": cfg.sigma_min, "sigma_data": sd}},
            "sigma_min": cfg.sigma_min, "sigma_max": cfg.sigma_max, "shape": list(teacher.shape),
            "autoencoder": autoencoder, "num_classes": classes, "data": teacher.config.get("data"),
            "guidance_range": [cfg.w_min, cfg.w_max]}


def student_init(teacher: Any, config: dict[str, Any]) -> dict[str, Tensor]:
    """The student's initial weights (of the io `config`): the teacher's UNet; the w-projection at zero, or the
    LoRA adapters at their peft initialisation (B = 0: the student starts as the teacher)."""
    fresh = build_denoiser(config).state_dict()
    base = {f"net.inner.unet.{k}": v.detach().float().clone() for k, v in unet_of(teacher).state_dict().items()}
    state = {}
    for k, v in fresh.items():
        plain = k.replace(".base_layer.", ".")
        state[k] = base[plain] if plain in base else (torch.zeros_like(v) if k.startswith("net.proj.") else v)
    return state


class LCMObjective(ConsistencyObjective):
    """L_LCD (Luo et al. 2023, Eq. 10): d(f(z_{t_{n+k}}, w, c, t_{n+k}), f^-(z_hat_{t_n}, w, c, t_n)), with w ~
    U[w_min, w_max] per sample and z_hat one teacher step of the w-guided PF-ODE; the EMA target is the parent's."""

    def __init__(self, cfg: LCMConfig, teacher: Any) -> None:
        self.cfg, self.teacher = cfg, InputCFG(teacher, null_label(teacher))
        self.reg, self.K = None, 1
        self.target: nn.Module | None = None
        self.online: nn.Module | None = None

    def schedule(self, k: int) -> tuple[int, float]:
        return self.cfg.N, self.cfg.mu

    def loss(self, model: nn.Module, x0: Tensor, cond: Any, generator: torch.Generator, step: int) -> Tensor:
        c = self.cfg
        grid = S.cm_grid(c.N, c.sigma_min, c.sigma_max, c.rho).to(x0.device)
        n = torch.randint(0, c.N - c.skip, (x0.shape[0],), generator=generator, device=x0.device)
        w = c.w_min + (c.w_max - c.w_min) * torch.rand(x0.shape[0], generator=generator, device=x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        online = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        target = self.target if (c.mu > 0 and self.target is not None) else online
        return consistency_loss(model, target, x0, grid[n + c.skip], grid[n], z, self.teacher, c.solver,
                                {"y": cond, "w": w}, c.dist, "uniform", c.c)


def latents(teacher: Any, data: ImageData) -> ImageData:
    """The data set encoded by the teacher's autoencoder (what the student is distilled on)."""
    with torch.no_grad():
        return encode_dataset(teacher.autoencoder, data)


def distill_lcm(cfg: LCMConfig, tc: Any, data: ImageData, teacher: Any, autoencoder: str,
                out: str | Path | None = None, ckpt: str | Path | None = None, resume: bool = False,
                device: str | torch.device = "cpu", command: str | None = None) -> Any:
    """Distil the latent teacher (a loaded LatentDenoiser) into a guided LCM on `data`'s latents; `autoencoder`
    is the path recorded in the student's config (relative to `out`). Returns the loop's TrainResult."""
    mc = student_config(teacher, cfg, autoencoder)
    mc["distill"] = {"mode": "lcm", **dataclasses.asdict(cfg)}
    ckpt_path = Path(ckpt) if ckpt is not None else (Path(out).with_suffix(".ckpt.pt") if out is not None else None)
    objective = LCMObjective(cfg, copy.copy(teacher))
    return train(mc, latents(teacher, data), dataclasses.replace(tc, label_dropout=0.0), out=out, ckpt=ckpt_path,
                 resume=resume, device=device, command=command, objective=objective,
                 init_state=student_init(teacher, mc))
