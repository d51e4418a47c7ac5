"""The class-conditional latent teacher (Rombach et al. 2022 with EDM training, Karras et al. 2022): a diffusers
UNet2DModel on the autoencoder's standardised latents (sigma_data = 1), EDM-preconditioned, with label dropout for
classifier-free guidance (Ho & Salimans 2022), trained by fewstep's loop and written as a diffusers folder.
objective="flow" trains the same UNet as a latent flow-matching velocity model instead (Dao et al. 2023, "Flow
Matching in Latent Space"; precond.flow with the diffusers timestep 1000 t, read by the folder's
FlowMatchEulerDiscreteScheduler)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..data.sets import ImageData
from ..errors import DataError
from ..io import git_commit
from ..nets.diffusers_unet import unet2d_config
from ..noise import RectifiedFlow
from ..train.config import TrainConfig
from ..train.loop import train
from .autoencoder import KLAutoencoder
from .config import LDMConfig
from .stack import encode_dataset, save_stack

SIGMA_DATA = 1.0  # the latents are standardised to unit variance
LOSS_KWARGS = {"sigma_data": SIGMA_DATA, "P_mean": -0.6, "P_std": 1.2}  # EDM's -1.2 shifted by ln(1 / 0.5)
OBJECTIVES = ("edm", "flow")


def model_config(ae: KLAutoencoder, cfg: LDMConfig, num_classes: int, data_name: str,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, objective: str = "edm") -> dict[str, Any]:
    """The fewstep io config of the latent teacher: net diffusers_unet2d over ae's latent shape, EDM precond (or,
    for objective="flow", the velocity precond over noise.RectifiedFlow's t range, the one diffusers' FlowMatch
    schedulers give a 1000-step model)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    try:
        widths = tuple(int(c) for c in cfg.unet_channels.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 16 or any(w % 16 for w in widths):
        raise ValueError(f"--unet-channels must be comma-separated multiples of 16 (e.g. 64,128), got "
                         f"{cfg.unet_channels!r}")
    c, h, _ = ae.latent_shape
    unet = unet2d_config(c, h, widths, cfg.layers_per_block, cfg.attention_head_dim)
    precond: dict[str, Any] = {"name": "edm", "kwargs": {"sigma_data": SIGMA_DATA}}
    if objective == "flow":
        precond = {"name": "flow", "kwargs": {"time_scale": 1000.0}}
        sigma_min, sigma_max = RectifiedFlow().sigma_min, RectifiedFlow().sigma_max
    return {"kind": "denoiser", "net": {"class": "diffusers_unet2d", "kwargs": {"config": unet,
                                                                               "num_classes": num_classes}},
            "precond": precond, "sigma_min": sigma_min,
            "sigma_max": sigma_max, "shape": [c, h, h], "data": {"name": data_name, "split": "train"}}


def train_teacher(ae_folder: str | os.PathLike, data: ImageData, cfg: LDMConfig, run: TrainConfig,
                  out: str | os.PathLike, resume: bool = False, device: str = "cpu", command: str | None = None,
                  overwrite: bool = False, sampler: dict[str, Any] | None = None, objective: str = "edm",
                  coupling: str = "independent") -> torch.nn.Module:
    """Encode `data` with the autoencoder at `ae_folder`, train the latent teacher on it (checkpoint
    `out`.ckpt.pt, exact resume), and write the diffusers folder `out` (vae/ copied from ae_folder).
    objective="flow": flow matching with `coupling` (independent or minibatch OT, fewstep.flow.coupling)."""
    if data.y is None or not data.num_classes:
        raise DataError(f"the latent teacher is class-conditional; data set {data.name!r} has no labels")
    out = Path(out)
    ae = KLAutoencoder.from_pretrained(ae_folder).to(device)
    latents = encode_dataset(ae, data)
    mc = model_config(ae, cfg, data.num_classes, data.name, objective=objective)
    ckpt = out.with_name(out.name + ".ckpt.pt")
    loss_kwargs = dict(LOSS_KWARGS) if objective == "edm" else {"coupling": coupling}
    run = dataclasses.replace(run, loss=objective, loss_kwargs=loss_kwargs)
    result = train(mc, latents, run, out=None, ckpt=ckpt, resume=resume, device=device, command=command)
    den = result.den
    den.config = mc
    meta = {"data": data.name, "sampler": sampler or {"plan": "dpm_solver_pp_2m", "nfe": 10, "grid": "logsnr"},
            "train": {**dataclasses.asdict(run), "unet": dataclasses.asdict(cfg),
                      "command": command, "commit": git_commit(), "wall_s": round(result.wall_s, 1),
                      "final_loss": result.losses[-1] if result.losses else None}}
    save_stack(out, den, Path(ae_folder), meta, overwrite=overwrite)
    return den
